/**
 * `siderolink-sidecar mesh`: the WgLAN-style mesh role. Keeps its WireGuard key in the state
 * dir, derives its mesh address from it, publishes its sealed record through the relay's mesh
 * discovery service, configures every member it learns, and reaches each one directly over UDP
 * where a path works and through the relay where none does (sidecar/mesh/).
 */
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { hostname } from "node:os";
import { DEFAULT_MESH_PREFIX, parseMeshPrefix } from "../../shared/mesh/address.ts";
import { MAX_ROUTED_PREFIXES } from "../../shared/mesh/record.ts";
import { type Prefix, parseNetworkPrefix } from "../../shared/net/ip.ts";
import { formatKey, generatePrivateKey, parseKey } from "../../shared/siderolink/keys.ts";
import {
  DAEMON_OPTION_SPECS,
  daemonCommand,
  loadRelayAccess,
  readDaemonSettings,
  runUntilShutdown,
} from "../daemon.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { watchShutdown } from "../lifecycle.ts";
import { type Logger, redactUrl } from "../log.ts";
import {
  DEFAULT_SWEEP_MS,
  type MeshMember,
  type MeshMemberOptions,
  startMeshMember,
} from "../mesh/member.ts";
import { proxyFor } from "../net/proxy.ts";
import { checkInterfaceName, integerOption, parseOptions } from "../options.ts";
import { requireNetAdmin, resolveBackend } from "../preflight.ts";
import { DEFAULT_STATE_DIRECTORY, ensureStateDirectory, loadOrCreate } from "../state.ts";
import { DEFAULT_RUN_DIRECTORY } from "../status.ts";
import type { Command } from "./command.ts";

export const MESH_KEY_FILE = "mesh.key";

const help = `Usage: siderolink-sidecar mesh --relay URL --cluster-token-file FILE [OPTIONS]

Joins this host to a WireGuard mesh: every member reaches every other member's mesh address
and routed prefixes, directly over UDP where a path works and through the relay where none
does (still end-to-end encrypted). Members find each other through the relay's mesh discovery
service; their records are sealed with a key derived from the cluster token, and the relay
knows the cluster only by the token's SHA-256. Runs until SIGINT or SIGTERM, then removes the
interface, its routes, rules and nftables table.

Options (environment variable in brackets):
  --relay URL                the relay's base URL, http(s)://host:port        [SIDEROLINK_RELAY]
  --cluster-token-file FILE  the cluster token (the same on every member)
                                                           [SIDEROLINK_CLUSTER_TOKEN_FILE]
  --iface NAME               interface to create (default wglan0)              [SIDEROLINK_IFACE]
  --prefix CIDR              mesh prefix, IPv6 /64 or shorter (default ${DEFAULT_MESH_PREFIX})
                                                                         [SIDEROLINK_MESH_PREFIX]
  --listen-port PORT         WireGuard UDP port (default 51820; 0 picks one)
                                                                    [SIDEROLINK_LISTEN_PORT]
  --pod-cidr CIDR            a prefix this host routes for the mesh (repeatable)
  --wireguard BACKEND        auto, userspace (our WireGuard on a TUN) or kernel (an interface
                             configured with wg; auto picks kernel where the module is loaded)
                                                                         [SIDEROLINK_WIREGUARD]
  --wireguard-go CMD         make the kernel backend's interface by running CMD IFACE (e.g.
                             wireguard-go) instead of the kernel module
                                                      [WG_QUICK_USERSPACE_IMPLEMENTATION]
  --sweep-interval SEC       how often a relayed peer's direct candidates are tried again
                             (default ${DEFAULT_SWEEP_MS / 1000})               [SIDEROLINK_SWEEP_INTERVAL]
  --kubeconfig FILE          also learn peers from the Kubernetes Nodes' annotations
                             (networking.talos.dev/kubespan-*, assigned-prefixes) and write
                             this host's on its own Node                             [KUBECONFIG]
  --node-name NAME           this host's Node (default the hostname)    [SIDEROLINK_NODE_NAME]
  --state DIR                keeps the mesh key (default ${DEFAULT_STATE_DIRECTORY})
                                                                           [SIDEROLINK_STATE_DIR]
  --run-dir DIR              where the status socket goes (default ${DEFAULT_RUN_DIRECTORY})
                                                                             [SIDEROLINK_RUN_DIR]
  --ca-file FILE             trust this CA (PEM) for the relay's TLS          [SIDEROLINK_CA_FILE]
  --insecure                 do not verify the relay's TLS certificate (warns at every start)
  -h, --help                 show this text

Status: siderolink-sidecar status --iface NAME --json lists each peer with its mesh address,
routed prefixes, path (direct with its endpoint, or relay), last handshake and bytes.
`;

export const meshCommand: Command = daemonCommand(
  "mesh",
  "join a WireGuard mesh, direct where UDP flows and through the relay elsewhere",
  help,
  run,
);

async function run(args: string[], log: Logger): Promise<number> {
  const podCidrs: Prefix[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--pod-cidr" || arg.startsWith("--pod-cidr=")) {
      const text = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[++i];
      if (text === undefined)
        throw new SidecarError(ExitCode.Usage, "--pod-cidr needs a value; see --help");
      podCidrs.push(usage(() => parseNetworkPrefix(text, "--pod-cidr")));
    } else {
      rest.push(arg);
    }
  }
  if (podCidrs.length > MAX_ROUTED_PREFIXES) {
    throw new SidecarError(
      ExitCode.Usage,
      `${podCidrs.length} --pod-cidr values; at most ${MAX_ROUTED_PREFIXES}`,
    );
  }
  const options = parseOptions(rest, [
    ...DAEMON_OPTION_SPECS,
    { name: "relay", value: true, env: "SIDEROLINK_RELAY" },
    { name: "cluster-token-file", value: true, env: "SIDEROLINK_CLUSTER_TOKEN_FILE" },
    { name: "prefix", value: true, env: "SIDEROLINK_MESH_PREFIX" },
    { name: "listen-port", value: true, env: "SIDEROLINK_LISTEN_PORT" },
    { name: "sweep-interval", value: true, env: "SIDEROLINK_SWEEP_INTERVAL" },
    { name: "kubeconfig", value: true, env: "KUBECONFIG" },
    { name: "node-name", value: true, env: "SIDEROLINK_NODE_NAME" },
  ]);
  if (options.positional.length > 0) {
    throw new SidecarError(
      ExitCode.Usage,
      `unexpected argument ${JSON.stringify(options.positional[0])}; see --help`,
    );
  }
  const settings = {
    ...readDaemonSettings(options),
    iface: checkInterfaceName(options.get("iface") ?? "wglan0"),
  };
  const relayText = options.get("relay");
  if (relayText === undefined)
    throw new SidecarError(ExitCode.Usage, "--relay URL is required; see --help");
  let relay: URL;
  try {
    relay = new URL(relayText);
    if (relay.protocol !== "http:" && relay.protocol !== "https:") throw new Error("scheme");
  } catch {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay ${JSON.stringify(relayText)}: expected http(s)://host[:port]`,
    );
  }
  const tokenFile = options.get("cluster-token-file");
  if (tokenFile === undefined) {
    throw new SidecarError(ExitCode.Usage, "--cluster-token-file FILE is required; see --help");
  }
  let clusterToken: string;
  try {
    clusterToken = readFileSync(tokenFile, "utf8");
  } catch (cause) {
    throw new SidecarError(
      ExitCode.Usage,
      `--cluster-token-file ${tokenFile}: ${(cause as Error).message}`,
    );
  }
  const prefix = usage(() => parseMeshPrefix(options.get("prefix") ?? DEFAULT_MESH_PREFIX));
  const listenPort = integerOption(options, "listen-port", 51820, 0, 65535);
  const sweepMs = integerOption(options, "sweep-interval", DEFAULT_SWEEP_MS / 1000, 1, 3600) * 1000;
  const kubeconfig = options.get("kubeconfig");
  let kubernetes: MeshMemberOptions["kubernetes"];
  if (kubeconfig !== undefined && kubeconfig !== "") {
    // Loaded only here: the Kubernetes client is most of the bundle, and no other use needs it.
    const { loadKubeConfig } = await import("../mesh/kubernetes-nodes.ts");
    kubernetes = {
      config: usage(() => loadKubeConfig(kubeconfig)),
      nodeName: options.get("node-name") ?? hostname(),
      publish: true,
    };
  }

  requireNetAdmin();
  const backend = await resolveBackend(settings.backendChoice, settings.wireguardGo);
  const { tls, proxy } = loadRelayAccess(options, log);
  ensureStateDirectory(settings.stateDirectory);
  const privateKey = loadMeshKey(settings.stateDirectory);
  // The TCP connection the rules keep out of the tunnel: the proxy's when one carries it.
  const dialed = proxyFor(proxy, relay)?.url ?? relay;
  const host = dialed.hostname.replace(/^\[|\]$/g, "");
  const relayAddresses = isIP(host)
    ? [host]
    : (await lookup(host, { all: true })).map((a) => a.address);
  const relayPort = Number(dialed.port || (dialed.protocol === "https:" ? 443 : 80));

  const shutdown = watchShutdown();
  let member: MeshMember | undefined;
  return runUntilShutdown(
    {
      async start() {
        member = await startMeshMember({
          iface: settings.iface,
          relay: relay.origin,
          clusterToken,
          prefix,
          listenPort,
          podCidrs,
          privateKey,
          backend,
          wireguardGo: settings.wireguardGo,
          relayAddresses,
          relayPort,
          sweepMs,
          ...(kubernetes === undefined ? {} : { kubernetes }),
          tls,
          proxy,
          log,
        });
        log.info("mesh member up", {
          iface: settings.iface,
          backend,
          address: member.address,
          relay: redactUrl(relay.origin),
        });
      },
      snapshot: () => member!.snapshot(),
      async close() {
        await member?.close();
      },
    },
    settings,
    shutdown,
    log,
  );
}

/** The member's WireGuard key, made on first start; a damaged file is an error, never replaced. */
function loadMeshKey(directory: string): Uint8Array {
  const text = loadOrCreate(directory, MESH_KEY_FILE, () => formatKey(generatePrivateKey()));
  try {
    return parseKey(text, MESH_KEY_FILE);
  } catch (cause) {
    throw new SidecarError(
      ExitCode.Failure,
      `${directory}/${MESH_KEY_FILE} does not hold a WireGuard private key (base64 of 32 bytes); restore it, or delete it to make a new key (the mesh address changes with it)`,
      { cause },
    );
  }
}

function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new SidecarError(ExitCode.Usage, (error as Error).message);
  }
}
