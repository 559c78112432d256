/**
 * `siderolink-sidecar serve`: the server role, on the management host. Holds the network's
 * server WireGuard key (kept in the state dir), brings up the interface with the server
 * address (prefix::1/64), and keeps the uplink to the relay: peers come and go as the relay
 * reports them, and node datagrams, tagged with their virtual addresses, flow through it.
 */
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { VIRTUAL_PEER_PORT } from "../../shared/siderolink/addressing.ts";
import { parsePrefix } from "../../shared/siderolink/ipv6.ts";
import { formatKey, publicKey } from "../../shared/siderolink/keys.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import type { StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";
import { LinkMtu, PersistentKeepaliveSeconds, type WireGuardBackend } from "../backend/backend.ts";
import { createKernelBackend } from "../backend/kernel.ts";
import { createUserspaceBackend } from "../backend/userspace.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { createJsonLogger, type JsonLogger, redactUrl } from "../json-log.ts";
import { RetriesExhausted, retryWithBackoff, watchShutdown } from "../lifecycle.ts";
import { serveMetrics } from "../metrics.ts";
import { handshakeAgeSeconds } from "../monitor.ts";
import { ip, setLinkUp } from "../net/iproute2.ts";
import { checkInterfaceName, choiceOption, integerOption, parseOptions } from "../options.ts";
import { type BackendChoice, requireRoot, resolveBackend } from "../preflight.ts";
import { DefaultStateDirectory, ensureStateDirectory, loadOrCreateServerKey } from "../state.ts";
import {
  DefaultRunDirectory,
  type StatusSnapshot,
  serveStatus,
  statusSocketPath,
} from "../status.ts";
import { InsecureWarning, loadTlsSettings, type TlsSettings, tlsOptions } from "../tls.ts";
import { connectUplink, type Uplink } from "../uplink/client.ts";
import { PeerReconciler, type PeerTable } from "../uplink/peers.ts";
import type { Command } from "./command.ts";

const help = `Usage: siderolink-sidecar serve --relay URL --network NAME --admin-secret SECRET [OPTIONS]

Terminates a SideroLink network on this (management) host: keeps the server's WireGuard key,
brings up the interface with the network's server address (prefix::1/64), and holds the
uplink to the relay, adding and removing node peers as the relay reports them. Runs until
SIGINT or SIGTERM, then removes the interface, its routes and its sockets.

Options (environment variable in brackets):
  --relay URL               the relay's base URL, http(s)://host:port           [SIDEROLINK_RELAY]
  --network NAME            the relay network to serve                        [SIDEROLINK_NETWORK]
  --admin-secret SECRET     the network's admin secret (siderolink-relay network show NAME)
                                                                        [SIDEROLINK_ADMIN_SECRET]
  --admin-secret-file FILE  read the admin secret from FILE instead  [SIDEROLINK_ADMIN_SECRET_FILE]
  --address CIDR            the server address to use (default: asked from the relay)
  --iface NAME              interface to create (default siderolink)            [SIDEROLINK_IFACE]
  --state DIR               keeps the server key (default ${DefaultStateDirectory})
                                                                           [SIDEROLINK_STATE_DIR]
  --run-dir DIR             where the status socket goes (default ${DefaultRunDirectory})
                                                                             [SIDEROLINK_RUN_DIR]
  --wireguard BACKEND       auto, userspace or kernel (auto: kernel when the host has the module)
                                                                         [SIDEROLINK_WIREGUARD]
  --wireguard-go CMD        make the kernel backend's interface by running CMD IFACE (e.g.
                            wireguard-go)                   [WG_QUICK_USERSPACE_IMPLEMENTATION]
  --ca-file FILE            trust this CA (PEM) for the relay's TLS          [SIDEROLINK_CA_FILE]
  --insecure                do not verify the relay's TLS certificate (warns at every start)
  --metrics-port PORT       serve Prometheus metrics on 127.0.0.1:PORT (default: off)
                                                                      [SIDEROLINK_METRICS_PORT]
  --connect-timeout SEC     give up (exit ${ExitCode.RelayUnreachable}) when the relay stays unreachable this long at
                            start; 0 retries forever (default)    [SIDEROLINK_CONNECT_TIMEOUT]
  -h, --help                show this text

Exit status: 0 after SIGINT/SIGTERM; ${ExitCode.Usage} bad option; ${ExitCode.NotRoot} not root; ${ExitCode.NoTun} no /dev/net/tun;
${ExitCode.BadUrl} bad relay URL; ${ExitCode.BadCredentials} admin secret refused or no such network; ${ExitCode.RelayUnreachable} relay
unreachable for --connect-timeout; ${ExitCode.Failure} anything else. Logs are JSON lines on standard error.
`;

const OptionSpecs = [
  { name: "relay", value: true, env: "SIDEROLINK_RELAY" },
  { name: "network", value: true, env: "SIDEROLINK_NETWORK" },
  { name: "admin-secret", value: true, env: "SIDEROLINK_ADMIN_SECRET" },
  { name: "admin-secret-file", value: true, env: "SIDEROLINK_ADMIN_SECRET_FILE" },
  { name: "address", value: true },
  { name: "iface", value: true, env: "SIDEROLINK_IFACE" },
  { name: "state", value: true, env: "SIDEROLINK_STATE_DIR" },
  { name: "run-dir", value: true, env: "SIDEROLINK_RUN_DIR" },
  { name: "wireguard", value: true, env: "SIDEROLINK_WIREGUARD" },
  { name: "wireguard-go", value: true, env: "WG_QUICK_USERSPACE_IMPLEMENTATION" },
  { name: "ca-file", value: true, env: "SIDEROLINK_CA_FILE" },
  { name: "insecure", value: false, env: "SIDEROLINK_INSECURE" },
  { name: "metrics-port", value: true, env: "SIDEROLINK_METRICS_PORT" },
  { name: "connect-timeout", value: true, env: "SIDEROLINK_CONNECT_TIMEOUT" },
] as const;

export const serveCommand: Command = {
  summary: "terminate a SideroLink network on the management host (server role)",
  help,
  async run(args) {
    const log = createJsonLogger("serve");
    try {
      return await serve(args, log);
    } catch (error) {
      if (!(error instanceof SidecarError)) throw error;
      log.error(error.message, { exitCode: error.exitCode });
      process.stderr.write(`siderolink-sidecar serve: ${error.message}\n`);
      return error.exitCode;
    }
  },
};

function required(value: string | undefined, name: string): string {
  if (value === undefined || value === "") {
    throw new SidecarError(ExitCode.Usage, `--${name} is required; see --help`);
  }
  return value;
}

function readSecret(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (cause) {
    throw new SidecarError(
      ExitCode.Usage,
      `--admin-secret-file ${file}: ${(cause as Error).message}`,
    );
  }
}

function checkRelayUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay ${JSON.stringify(redactUrl(text))} is not a URL; expected http(s)://host:port`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay scheme ${url.protocol} is not http: or https:`,
    );
  }
  return url;
}

async function serve(args: string[], log: JsonLogger): Promise<number> {
  const options = parseOptions(args, OptionSpecs);
  if (options.positional.length > 0) {
    throw new SidecarError(
      ExitCode.Usage,
      `unexpected argument ${JSON.stringify(options.positional[0])}; see --help`,
    );
  }
  const relay = checkRelayUrl(required(options.get("relay"), "relay"));
  const relayUrl = relay.origin;
  const network = required(options.get("network"), "network");
  const secretFile = options.get("admin-secret-file");
  const adminSecret = secretFile
    ? readSecret(secretFile)
    : required(options.get("admin-secret"), "admin-secret");
  const iface = checkInterfaceName(options.get("iface") ?? "siderolink");
  const backendChoice = choiceOption<BackendChoice>(
    options,
    "wireguard",
    ["auto", "userspace", "kernel"],
    "auto",
  );
  const metricsPort = integerOption(options, "metrics-port", 0, 0, 65535);
  const connectTimeoutMs = integerOption(options, "connect-timeout", 0, 0, 86_400) * 1000;
  const stateDirectory = options.get("state") ?? DefaultStateDirectory;
  const runDirectory = options.get("run-dir") ?? DefaultRunDirectory;
  const wireguardGo = options.get("wireguard-go");
  const addressOverride = options.get("address");
  if (addressOverride !== undefined) {
    try {
      parsePrefix(addressOverride, "--address");
    } catch (error) {
      throw new SidecarError(ExitCode.Usage, (error as Error).message);
    }
  }

  requireRoot();
  const backendKind = await resolveBackend(backendChoice, wireguardGo);
  const tls = loadTlsSettings(options.get("ca-file"), options.flag("insecure"));
  if (tls.insecure) log.warn(InsecureWarning);
  ensureStateDirectory(stateDirectory);
  const serverKey = loadOrCreateServerKey(stateDirectory);
  const serverPublicKey = publicKey(serverKey);
  log.info("starting", {
    relay: relayUrl,
    network,
    iface,
    backend: backendKind,
    publicKey: formatKey(serverPublicKey),
  });

  const shutdown = watchShutdown();
  let address: string;
  try {
    address =
      addressOverride ??
      (await retryWithBackoff({
        what: `reading network ${network} from ${relayUrl}`,
        attempt: () => fetchServerAddress(relayUrl, network, adminSecret, tls),
        retryable: (error) => !(error instanceof SidecarError),
        log,
        signal: shutdown.signal,
        timeoutMs: connectTimeoutMs,
      }));
  } catch (error) {
    shutdown.dispose();
    if (shutdown.signal.aborted) return 0;
    if (error instanceof RetriesExhausted) {
      throw new SidecarError(
        ExitCode.RelayUnreachable,
        `the relay stayed unreachable: ${error.message}`,
      );
    }
    throw error;
  }

  let backend: WireGuardBackend | undefined;
  let uplink: Uplink | undefined;
  let status: Awaited<ReturnType<typeof serveStatus>> | undefined;
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  const startedAt = new Date().toISOString();
  try {
    const backendOptions = {
      iface,
      privateKey: serverKey,
      sink: (datagrams: readonly Uint8Array[], to: StreamEndpoint) =>
        uplink?.send(datagrams, to.addressBytes),
      log: (message: string) => log.debug(message),
    };
    backend =
      backendKind === "kernel"
        ? await createKernelBackend({ ...backendOptions, wireguardGo })
        : await createUserspaceBackend(backendOptions);
    const wg = backend;
    await ip(["address", "replace", address, "dev", iface, "nodad"]);
    await setLinkUp(iface);
    log.info("interface created", { iface, backend: wg.kind, address, mtu: LinkMtu });

    const table: PeerTable = {
      async setPeer(peer) {
        await wg.setPeer({
          publicKey: peer.publicKeyBytes,
          allowedIps: [`${peer.address}/128`],
          endpoint: wg.endpoint(peer.tag, VIRTUAL_PEER_PORT),
          persistentKeepalive: PersistentKeepaliveSeconds,
        });
        log.info("peer added", {
          publicKey: peer.publicKey,
          address: peer.address,
          virtualAddress: peer.virtualAddress,
        });
      },
      async removePeer(peer) {
        await wg.removePeer(peer.publicKeyBytes);
        log.info("peer removed", { publicKey: peer.publicKey, address: peer.address });
      },
    };
    const reconciler = new PeerReconciler(table);
    const batch: Uint8Array[] = [];
    uplink = connectUplink({
      relayUrl,
      network,
      adminSecret,
      serverPublicKey,
      reconciler,
      tls,
      log: log.with({ uplink: network }),
      onDatagrams(tags, datagrams) {
        // Consecutive datagrams of one node go to the device as one batch.
        let i = 0;
        while (i < datagrams.length) {
          const tag = tags[i];
          batch.length = 0;
          while (i < datagrams.length && sameTag(tags[i], tag)) batch.push(datagrams[i++]);
          wg.deliver(batch, wg.endpoint(tag, VIRTUAL_PEER_PORT));
        }
        batch.length = 0;
      },
      onFatal(reason, code) {
        const exitCode =
          code === CloseCode.Unauthorized ? ExitCode.BadCredentials : ExitCode.Failure;
        log.error("the relay refused the uplink", { reason, code });
        process.stderr.write(`siderolink-sidecar serve: the relay refused the uplink: ${reason}\n`);
        shutdown.stop(`uplink refused: ${reason}`, exitCode);
      },
    });

    const snapshot = async (): Promise<StatusSnapshot> => {
      const now = Date.now();
      const link = uplink!;
      const peers = await wg.peers();
      return {
        role: "server",
        iface,
        backend: wg.kind,
        pid: process.pid,
        startedAt,
        relay: `${relayUrl}/v1/networks/${network}/uplink`,
        up: link.synced,
        transport: {
          kind: "websocket",
          state: link.state,
          lastError: link.lastError ?? null,
          connects: link.stats.connects,
          rxDatagrams: link.stats.rxDatagrams,
          txDatagrams: link.stats.txDatagrams,
          rxBytes: link.stats.rxBytes,
          txBytes: link.stats.txBytes,
        },
        addresses: { local: address, server: address.split("/")[0], virtual: null },
        peers: peers.map((peer) => ({
          publicKey: peer.publicKey,
          endpoint: peer.endpoint,
          address: reconciler.peers.get(peer.publicKey)?.address,
          lastHandshake:
            peer.lastHandshake === 0 ? null : new Date(peer.lastHandshake).toISOString(),
          lastHandshakeAgeSeconds: handshakeAgeSeconds(now, peer.lastHandshake),
          rxBytes: peer.rxBytes,
          txBytes: peer.txBytes,
        })),
        drops: {
          ...wg.drops(),
          uplinkNotConnected: link.stats.dropsNotConnected,
          uplinkCongested: link.stats.dropsCongested,
        },
      };
    };
    status = await serveStatus(statusSocketPath(runDirectory, iface), snapshot);
    if (metricsPort !== 0) {
      metrics = await serveMetrics(metricsPort, snapshot);
      log.info("serving metrics", { url: `http://127.0.0.1:${metrics.port}/metrics` });
    }
    log.info("ready", { statusSocket: status.path });
    const reason = await shutdown.requested;
    log.info("shutting down", { reason });
  } finally {
    shutdown.dispose();
    await metrics?.close();
    await status?.close();
    await uplink?.close();
    await backend?.close();
    log.info("stopped: interface, routes and sockets removed", { iface });
  }
  return shutdown.exitCode;
}

function sameTag(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The server address with its prefix length (`prefix::1/64`), from the relay's network
 * description (`GET /v1/networks/NAME`, admin secret as bearer token).
 */
function fetchServerAddress(
  relayUrl: string,
  network: string,
  adminSecret: string,
  tls: TlsSettings,
): Promise<string> {
  const url = new URL(`/v1/networks/${encodeURIComponent(network)}`, relayUrl);
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "GET",
        headers: { authorization: `Bearer ${adminSecret}`, accept: "application/json" },
        timeout: 10_000,
        ...(url.protocol === "https:" ? tlsOptions(tls) : {}),
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => {
          const status = response.statusCode ?? 0;
          if (status === 401 || status === 403 || status === 404) {
            reject(
              new SidecarError(
                ExitCode.BadCredentials,
                `the relay refused access to network ${JSON.stringify(network)} (HTTP ${status}): check --network and --admin-secret (siderolink-relay network show ${network} --json)`,
              ),
            );
            return;
          }
          if (status !== 200) {
            reject(new Error(`HTTP ${status} from ${url.origin}: ${body.slice(0, 200)}`));
            return;
          }
          try {
            const summary = JSON.parse(body) as { prefix?: string; serverAddress?: string };
            const bits = summary.prefix ? parsePrefix(summary.prefix).bits : 64;
            if (!summary.serverAddress) throw new Error("no serverAddress");
            resolve(`${summary.serverAddress}/${bits}`);
          } catch (error) {
            reject(
              new SidecarError(
                ExitCode.Failure,
                `the relay's network description is unusable: ${(error as Error).message}`,
              ),
            );
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url.origin} within 10 s`)));
    req.on("error", (error) => reject(new Error(`${url.origin} unreachable: ${error.message}`)));
    req.end();
  });
}
