/**
 * `siderolink-sidecar join [API-URL]`: the node role. Provisions with the relay (or any
 * SideroLink API) the way Talos does, brings up the WireGuard link to the management server and
 * keeps it up: the tunnel stream reconnects by itself, the handshake is watched every 30 s, and
 * the node provisions again when the relay forgot it or the link stayed dead for 275 s.
 */
import { readFileSync } from "node:fs";
import { type ApiUrl, parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { parseSideroLinkConfig } from "../../shared/siderolink/config.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import { parseAddrPort } from "../../shared/siderolink/ipv6.ts";
import {
  formatKey,
  generatePrivateKey,
  parseKey,
  publicKey,
} from "../../shared/siderolink/keys.ts";
import type { StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";
import { LinkMtu, PersistentKeepaliveSeconds, type WireGuardBackend } from "../backend/backend.ts";
import { createKernelBackend } from "../backend/kernel.ts";
import { createUserspaceBackend } from "../backend/userspace.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { resolveIdentity } from "../identity.ts";
import { createJsonLogger, type JsonLogger, redactUrl } from "../json-log.ts";
import {
  RetriesExhausted,
  retryWithBackoff,
  type Shutdown,
  sleep,
  watchShutdown,
} from "../lifecycle.ts";
import { serveMetrics } from "../metrics.ts";
import { CheckIntervalMs, EndpointCycle, handshakeAgeSeconds, handshakeFresh } from "../monitor.ts";
import { ip, setLinkUp } from "../net/iproute2.ts";
import { checkInterfaceName, choiceOption, integerOption, parseOptions } from "../options.ts";
import { type BackendChoice, requireRoot, resolveBackend } from "../preflight.ts";
import {
  createProvisionTransport,
  defaultProvisionProtocol,
  type ProvisionProtocol,
  type ProvisionResult,
  ProvisionRetryableError,
  provision,
} from "../provision-client.ts";
import { DefaultStateDirectory } from "../state.ts";
import {
  DefaultRunDirectory,
  type StatusSnapshot,
  serveStatus,
  statusSocketPath,
} from "../status.ts";
import { InsecureWarning, loadTlsSettings, type TlsSettings } from "../tls.ts";
import { createGrpcNodeTransport } from "../transport/grpc.ts";
import { type NodeTransport, TerminalRetryMs } from "../transport/transport.ts";
import { createWebSocketTransport, tunnelUrl } from "../transport/websocket.ts";
import type { Command } from "./command.ts";

const help = `Usage: siderolink-sidecar join [OPTIONS] [API-URL]

Joins this machine to a SideroLink network as Talos does, through a relay when UDP is blocked.
Runs until SIGINT or SIGTERM, then removes the interface, its routes and its sockets.

API-URL (or the environment variable SIDEROLINK_API) is Talos's siderolink.api value, e.g.
  https://relay.example.com?jointoken=NETWORK.SECRET&grpc_tunnel=true
  grpc://10.0.0.1:8787?jointoken=NETWORK.SECRET
No scheme means grpc:// (plaintext HTTP/2); https and any other scheme use TLS (port 443).

Options (environment variable in brackets):
  --config FILE             read apiUrl (and uniqueToken) from a SideroLinkConfig document
                            instead of API-URL                                [SIDEROLINK_CONFIG]
  --iface NAME              interface to create (default siderolink); two sidecars on one
                            host need distinct names                          [SIDEROLINK_IFACE]
  --state DIR               keeps the unique token (default ${DefaultStateDirectory})
                                                                           [SIDEROLINK_STATE_DIR]
  --run-dir DIR             where the status socket goes (default ${DefaultRunDirectory})
                                                                             [SIDEROLINK_RUN_DIR]
  --node-uuid UUID          node UUID to present (default: /sys/class/dmi/id/product_uuid, else
                            derived from /etc/machine-id)                 [SIDEROLINK_NODE_UUID]
  --unique-token TOKEN      node unique token (default: generated once, kept in the state dir)
                                                                      [SIDEROLINK_UNIQUE_TOKEN]
  --transport KIND          auto, websocket or grpc: how to tunnel when the server asks for it;
                            auto is grpc for grpc:// URLs, websocket otherwise
                                                                         [SIDEROLINK_TRANSPORT]
  --network NAME            the relay network for the WebSocket tunnel (default: the part of
                            the join token before the first ".")           [SIDEROLINK_NETWORK]
  --provision-protocol P    auto, grpc, connect or grpc-web (auto: grpc for grpc://, connect
                            otherwise)                          [SIDEROLINK_PROVISION_PROTOCOL]
  --wireguard BACKEND       auto, userspace or kernel (auto: kernel when the host has the module)
                                                                         [SIDEROLINK_WIREGUARD]
  --wireguard-go CMD        make the kernel backend's interface by running CMD IFACE (e.g.
                            wireguard-go) instead of the kernel module
                                                          [WG_QUICK_USERSPACE_IMPLEMENTATION]
  --ca-file FILE            trust this CA (PEM) for the relay's TLS instead of the system roots
                                                                           [SIDEROLINK_CA_FILE]
  --insecure                do not verify the relay's TLS certificate (warns at every start)
  --metrics-port PORT       serve Prometheus metrics on 127.0.0.1:PORT (default: off)
                                                                      [SIDEROLINK_METRICS_PORT]
  --connect-timeout SEC     give up (exit ${ExitCode.RelayUnreachable}) when the relay stays unreachable this long at
                            start; 0 retries forever (default)    [SIDEROLINK_CONNECT_TIMEOUT]
  -h, --help                show this text

Exit status: 0 after SIGINT/SIGTERM; ${ExitCode.Usage} bad option; ${ExitCode.NotRoot} not root; ${ExitCode.NoTun} no /dev/net/tun;
${ExitCode.BadUrl} bad API URL or config; ${ExitCode.BadCredentials} join token refused; ${ExitCode.RelayUnreachable} relay unreachable for --connect-timeout;
${ExitCode.Failure} anything else. Logs are JSON lines on standard error (LOG_LEVEL=debug for more).
`;

const OptionSpecs = [
  { name: "config", value: true, env: "SIDEROLINK_CONFIG" },
  { name: "iface", value: true, env: "SIDEROLINK_IFACE" },
  { name: "state", value: true, env: "SIDEROLINK_STATE_DIR" },
  { name: "run-dir", value: true, env: "SIDEROLINK_RUN_DIR" },
  { name: "node-uuid", value: true, env: "SIDEROLINK_NODE_UUID" },
  { name: "unique-token", value: true, env: "SIDEROLINK_UNIQUE_TOKEN" },
  { name: "transport", value: true, env: "SIDEROLINK_TRANSPORT" },
  { name: "network", value: true, env: "SIDEROLINK_NETWORK" },
  { name: "provision-protocol", value: true, env: "SIDEROLINK_PROVISION_PROTOCOL" },
  { name: "wireguard", value: true, env: "SIDEROLINK_WIREGUARD" },
  { name: "wireguard-go", value: true, env: "WG_QUICK_USERSPACE_IMPLEMENTATION" },
  { name: "ca-file", value: true, env: "SIDEROLINK_CA_FILE" },
  { name: "insecure", value: false, env: "SIDEROLINK_INSECURE" },
  { name: "metrics-port", value: true, env: "SIDEROLINK_METRICS_PORT" },
  { name: "connect-timeout", value: true, env: "SIDEROLINK_CONNECT_TIMEOUT" },
] as const;

export const joinCommand: Command = {
  summary: "join this machine to a SideroLink network (node role)",
  help,
  async run(args) {
    const log = createJsonLogger("join");
    try {
      return await join(args, log);
    } catch (error) {
      if (!(error instanceof SidecarError)) throw error;
      log.error(error.message, { exitCode: error.exitCode });
      process.stderr.write(`siderolink-sidecar join: ${error.message}\n`);
      return error.exitCode;
    }
  },
};

interface JoinSettings {
  readonly api: ApiUrl;
  readonly apiText: string;
  readonly uniqueToken: string | undefined;
}

function readApi(
  positional: readonly string[],
  configFile: string | undefined,
  envApi: string | undefined,
): JoinSettings {
  try {
    if (configFile !== undefined) {
      if (positional.length > 0)
        throw new SidecarError(ExitCode.Usage, "give API-URL or --config, not both");
      let text: string;
      try {
        text = readFileSync(configFile, "utf8");
      } catch (cause) {
        throw new SidecarError(
          ExitCode.BadUrl,
          `--config ${configFile}: ${(cause as Error).message}`,
        );
      }
      const config = parseSideroLinkConfig(text);
      return { api: config.api, apiText: config.apiUrl, uniqueToken: config.uniqueToken };
    }
    if (positional.length > 1)
      throw new SidecarError(ExitCode.Usage, `expected one API-URL, got ${positional.length}`);
    const text = positional[0] ?? envApi;
    if (text === undefined) {
      throw new SidecarError(
        ExitCode.Usage,
        "no API URL: pass API-URL, --config FILE or SIDEROLINK_API; see --help",
      );
    }
    return { api: parseApiUrl(text), apiText: text, uniqueToken: undefined };
  } catch (error) {
    if (error instanceof SideroLinkError) throw new SidecarError(ExitCode.BadUrl, error.message);
    throw error;
  }
}

async function join(args: string[], log: JsonLogger): Promise<number> {
  const options = parseOptions(args, OptionSpecs);
  const settings = readApi(options.positional, options.get("config"), process.env.SIDEROLINK_API);
  const { api } = settings;
  const iface = checkInterfaceName(options.get("iface") ?? "siderolink");
  const transportChoice = choiceOption(options, "transport", ["auto", "websocket", "grpc"], "auto");
  const protocolChoice = choiceOption(
    options,
    "provision-protocol",
    ["auto", "grpc", "connect", "grpc-web"],
    "auto",
  );
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
  if (api.joinToken === undefined) {
    log.warn("the API URL has no jointoken; the relay will refuse Provision without one");
  }

  requireRoot();
  const backendKind = await resolveBackend(backendChoice, wireguardGo);
  const tls = loadTlsSettings(options.get("ca-file"), options.flag("insecure"));
  if (tls.insecure) log.warn(InsecureWarning);
  const identity = resolveIdentity({
    uuid: options.get("node-uuid"),
    uniqueToken: options.get("unique-token") ?? settings.uniqueToken,
    stateDirectory,
  });
  const privateKey = generatePrivateKey();
  const nodePublicKey = formatKey(publicKey(privateKey));
  const protocol: ProvisionProtocol =
    protocolChoice === "auto" ? defaultProvisionProtocol(api) : protocolChoice;
  const provisionTransport = createProvisionTransport(api, protocol, tls);
  log.info("starting", {
    api: redactUrl(settings.apiText),
    iface,
    backend: backendKind,
    provisionProtocol: protocol,
    nodeUuid: identity.nodeUuid,
    uuidSource: identity.uuidSource,
    publicKey: nodePublicKey,
  });

  const shutdown = watchShutdown();
  const doProvision = (timeoutMs: number): Promise<ProvisionResult> =>
    retryWithBackoff({
      what: `Provision at ${api.origin}`,
      attempt: () =>
        provision(provisionTransport, {
          nodeUuid: identity.nodeUuid,
          nodePublicKey,
          joinToken: api.joinToken,
          uniqueToken: identity.uniqueToken,
          wireguardOverGrpc: api.grpcTunnel,
        }),
      retryable: (error) => error instanceof ProvisionRetryableError,
      log,
      signal: shutdown.signal,
      timeoutMs,
    });

  let first: ProvisionResult;
  try {
    first = await doProvision(connectTimeoutMs);
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

  const link = new NodeLink({
    api,
    iface,
    backendKind,
    wireguardGo,
    privateKey,
    tls,
    log,
    shutdown,
    transportChoice,
    network: options.get("network"),
    reprovision: () => doProvision(0),
  });
  let status: Awaited<ReturnType<typeof serveStatus>> | undefined;
  let metrics: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    await link.start(first);
    status = await serveStatus(statusSocketPath(runDirectory, iface), () =>
      link.snapshot(redactUrl(settings.apiText)),
    );
    if (metricsPort !== 0) {
      metrics = await serveMetrics(metricsPort, () => link.snapshot(redactUrl(settings.apiText)));
      log.info("serving metrics", { url: `http://127.0.0.1:${metrics.port}/metrics` });
    }
    log.info("ready", { statusSocket: status.path });
    const reason = await shutdown.requested;
    log.info("shutting down", { reason });
  } finally {
    shutdown.dispose();
    await metrics?.close();
    await status?.close();
    await link.close();
    log.info("stopped: interface, routes and sockets removed", { iface });
  }
  return shutdown.exitCode;
}

interface NodeLinkOptions {
  readonly api: ApiUrl;
  readonly iface: string;
  readonly backendKind: "userspace" | "kernel";
  readonly wireguardGo: string | undefined;
  readonly privateKey: Uint8Array;
  readonly tls: TlsSettings;
  readonly log: JsonLogger;
  readonly shutdown: Shutdown;
  readonly transportChoice: "auto" | "websocket" | "grpc";
  readonly network: string | undefined;
  readonly reprovision: () => Promise<ProvisionResult>;
}

/** The node's link: interface, the server peer, the tunnel, and the monitor that keeps it up. */
class NodeLink {
  readonly #options: NodeLinkOptions;
  readonly #startedAt = new Date().toISOString();
  #backend: WireGuardBackend | undefined;
  #transport: NodeTransport | undefined;
  #result: ProvisionResult | undefined;
  #serverEndpoint: StreamEndpoint | undefined;
  #cycle: EndpointCycle | undefined;
  #monitor: ReturnType<typeof setInterval> | undefined;
  #reprovisioning = false;
  #closed = false;

  constructor(options: NodeLinkOptions) {
    this.#options = options;
  }

  async start(result: ProvisionResult): Promise<void> {
    const { log } = this.#options;
    const tunnel = result.grpcPeerAddrPort !== "";
    const options = {
      iface: this.#options.iface,
      privateKey: this.#options.privateKey,
      sink: (datagrams: readonly Uint8Array[]) => this.#transport?.send(datagrams),
      udp: !tunnel,
      log: (message: string) => log.debug(message),
    };
    this.#backend =
      this.#options.backendKind === "kernel"
        ? await createKernelBackend({ ...options, wireguardGo: this.#options.wireguardGo })
        : await createUserspaceBackend(options);
    log.info("interface created", {
      iface: this.#backend.iface,
      backend: this.#backend.kind,
      mtu: LinkMtu,
    });
    await this.#apply(result, undefined);
    this.#monitor = setInterval(() => void this.#check(), CheckIntervalMs);
  }

  /** Configures the interface, peer and transport for a Provision answer. */
  async #apply(result: ProvisionResult, previous: ProvisionResult | undefined): Promise<void> {
    const backend = this.#backend!;
    const { log, iface } = this.#options;
    if (previous?.nodeAddressPrefix !== result.nodeAddressPrefix) {
      if (previous)
        await ip(["address", "del", previous.nodeAddressPrefix, "dev", iface]).catch(
          () => undefined,
        );
      await ip(["address", "replace", result.nodeAddressPrefix, "dev", iface, "nodad"]);
      await setLinkUp(iface);
    }
    await ip(["route", "replace", `${result.serverAddress}/128`, "dev", iface]);
    // The relay may hand the peer to the server afresh: dropping the old session makes
    // WireGuard handshake at once instead of after its 15 s of unanswered data.
    if (previous) await backend.removePeer(parseKey(previous.serverPublicKey, "server_public_key"));
    const tunnel = result.grpcPeerAddrPort !== "";
    this.#cycle = new EndpointCycle(
      tunnel ? [result.grpcPeerAddrPort] : result.endpoints,
      Date.now(),
    );
    if (tunnel) {
      const { address, port } = parseAddrPort(result.grpcPeerAddrPort, "grpc_peer_addr_port");
      this.#serverEndpoint = backend.endpoint(address, port);
    }
    await this.#setServerPeer(result);
    this.#result = result;
    log.info("link configured", {
      address: result.nodeAddressPrefix,
      server: result.serverAddress,
      serverKey: result.serverPublicKey,
      endpoint: this.#cycle.current,
      tunnel,
    });
    if (tunnel) this.#startTransport(result);
  }

  async #setServerPeer(result: ProvisionResult): Promise<void> {
    await this.#backend!.setPeer({
      publicKey: parseKey(result.serverPublicKey, "server_public_key"),
      allowedIps: [`${result.serverAddress}/128`],
      endpoint:
        this.#serverEndpoint && result.grpcPeerAddrPort !== ""
          ? this.#serverEndpoint
          : this.#cycle!.current,
      persistentKeepalive: PersistentKeepaliveSeconds,
    });
  }

  #startTransport(result: ProvisionResult): void {
    const { api, log, tls } = this.#options;
    const kind =
      this.#options.transportChoice === "auto"
        ? api.tls
          ? "websocket"
          : "grpc"
        : this.#options.transportChoice;
    const handlers = {
      onDatagrams: (datagrams: readonly Uint8Array[]) => {
        if (this.#serverEndpoint) this.#backend?.deliver(datagrams, this.#serverEndpoint);
      },
      onTerminal: () => void this.#reprovisionLater(TerminalRetryMs),
      log: log.with({ transport: kind }),
    };
    if (kind === "grpc") {
      this.#transport = createGrpcNodeTransport({
        ...handlers,
        api,
        peerAddrPort: result.grpcPeerAddrPort,
        tls,
      });
      return;
    }
    const network = this.#options.network ?? networkFromJoinToken(api.joinToken);
    this.#transport = createWebSocketTransport({
      ...handlers,
      url: tunnelUrl(api.origin, network),
      peerAddrPort: result.grpcPeerAddrPort,
      tls,
    });
  }

  async #check(): Promise<void> {
    if (this.#closed || this.#reprovisioning || !this.#cycle || !this.#result) return;
    const peer = await this.#serverPeerStatus();
    const action = this.#cycle.check(Date.now(), peer?.lastHandshake ?? 0);
    if (action.kind === "ok") return;
    const { log } = this.#options;
    if (action.kind === "next-endpoint") {
      log.warn("no handshake for 275 s; trying the next server endpoint", {
        endpoint: action.endpoint,
      });
      await this.#setServerPeer(this.#result);
      return;
    }
    log.warn("no handshake for 275 s on every endpoint; provisioning again");
    await this.#reprovisionLater(0);
  }

  async #reprovisionLater(delayMs: number): Promise<void> {
    if (this.#reprovisioning || this.#closed) return;
    this.#reprovisioning = true;
    try {
      await this.#transport?.close();
      this.#transport = undefined;
      if (!(await sleep(delayMs, this.#options.shutdown.signal))) return;
      const result = await this.#options.reprovision();
      if (this.#closed) return;
      await this.#apply(result, this.#result);
    } catch (error) {
      if (this.#closed) return;
      const exitCode = error instanceof SidecarError ? error.exitCode : ExitCode.Failure;
      this.#options.log.error("provisioning again failed", { error: (error as Error).message });
      this.#options.shutdown.stop(
        `provisioning again failed: ${(error as Error).message}`,
        exitCode,
      );
    } finally {
      this.#reprovisioning = false;
    }
  }

  async #serverPeerStatus() {
    const result = this.#result;
    if (!result || !this.#backend) return undefined;
    return (await this.#backend.peers()).find((peer) => peer.publicKey === result.serverPublicKey);
  }

  async snapshot(relay: string): Promise<StatusSnapshot> {
    const now = Date.now();
    const backend = this.#backend!;
    const transport = this.#transport;
    const peers = await backend.peers();
    const server = peers.find((peer) => peer.publicKey === this.#result?.serverPublicKey);
    const tunnel = this.#result?.grpcPeerAddrPort !== "";
    const fresh = handshakeFresh(now, server?.lastHandshake ?? 0);
    return {
      role: "node",
      iface: backend.iface,
      backend: backend.kind,
      pid: process.pid,
      startedAt: this.#startedAt,
      relay,
      up: fresh && (!tunnel || transport?.state === "connected"),
      transport: {
        kind: tunnel ? (transport?.kind ?? "none") : "udp",
        state: tunnel
          ? (transport?.state ?? (this.#reprovisioning ? "provisioning" : "stopped"))
          : "connected",
        lastError: transport?.lastError ?? null,
        connects: transport?.stats.connects ?? 0,
        rxDatagrams: transport?.stats.rxDatagrams ?? 0,
        txDatagrams: transport?.stats.txDatagrams ?? 0,
        rxBytes: transport?.stats.rxBytes ?? 0,
        txBytes: transport?.stats.txBytes ?? 0,
      },
      addresses: {
        local: this.#result?.nodeAddressPrefix ?? null,
        server: this.#result?.serverAddress ?? null,
        virtual: tunnel ? (this.#result?.grpcPeerAddrPort ?? null) : null,
      },
      peers: peers.map((peer) => ({
        publicKey: peer.publicKey,
        endpoint: peer.endpoint,
        lastHandshake: peer.lastHandshake === 0 ? null : new Date(peer.lastHandshake).toISOString(),
        lastHandshakeAgeSeconds: handshakeAgeSeconds(now, peer.lastHandshake),
        rxBytes: peer.rxBytes,
        txBytes: peer.txBytes,
      })),
      drops: {
        ...backend.drops(),
        tunnelNotConnected: transport?.stats.dropsNotConnected ?? 0,
        tunnelCongested: transport?.stats.dropsCongested ?? 0,
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#monitor);
    await this.#transport?.close();
    await this.#backend?.close();
  }
}

/** The relay network a join token names: `<network>.<secret>`. */
export function networkFromJoinToken(joinToken: string | undefined): string {
  const dot = joinToken?.indexOf(".") ?? -1;
  if (joinToken === undefined || dot <= 0) {
    throw new SidecarError(
      ExitCode.BadUrl,
      "cannot tell the relay network from the join token (expected NETWORK.SECRET): pass --network, or --transport grpc",
    );
  }
  return joinToken.slice(0, dot);
}
