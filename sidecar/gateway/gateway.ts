/**
 * The site gateway: Talos machines on a LAN whose egress drops UDP reach a relay that only
 * speaks HTTPS (the Worker) through it, unchanged (`siderolink.api=grpc://GATEWAY:PORT?...`).
 *
 *   Talos machine --gRPC Provision------> gateway --Connect/gRPC-web--> relay
 *   (tunnel)      --gRPC CreateStream---> gateway --one tunnel/machine-> relay --> server
 *   (kernel WG)   --UDP to LAN endpoint-> gateway --one tunnel/machine-> relay --> server
 *
 * Provision is forwarded (provision-forwarder.ts). A machine that asked for WireGuard over gRPC
 * gets the relay's answer as it is and streams to the gateway; one that did not gets
 * `grpc_peer_addr_port` cleared and the gateway's LAN UDP endpoint as `server_endpoint`, and
 * Talos then configures kernel WireGuard with that endpoint and a 25 s keepalive
 * (siderolabs/talos internal/app/machined/pkg/controllers/siderolink/manager.go: the link is a
 * kernel "wireguard" link when grpcPeerAddrPort is empty, its peer endpoint the first of the
 * answer's endpoints resolved as UDP). Either way the gateway carries ciphertext only.
 *
 * One relay tunnel per machine rather than one multiplexed connection: the relay needs nothing
 * new, a machine's tunnel fails and recovers alone, and the relay's per-node rules (replacement,
 * ownership, limits) apply to each machine as they do to a node sidecar. Measured with
 * `node --expose-gc bench/gateway-tunnels.ts 100 5` (100 WebSocket tunnels to a Node relay in
 * its own process on loopback, 2 vCPU shared with other work, two runs): the gateway's heap and
 * external memory grew 78-79 KiB per tunnel (RSS 47-56 KiB), all 100 opened in 0.14-0.77 s,
 * and one 148-byte datagram per WebSocket message (no batching, as slow machines send) moved
 * 30,000-72,000 datagrams/s with none dropped, every one counted by the relay: the relay, not
 * the gateway, is the limit (about 70,000 messages/s for a Node relay, ARCHITECTURE.md). What
 * multiplexing would save is at the relay: each tunnel's liveness ping (one message per 15 s,
 * 6.7 messages/s for 100 machines against a Durable Object's ~1,000/s) and batching across
 * machines. Worth a relay feature for sites of thousands of machines, not before.
 */
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  type ProvisionRequest,
  type ProvisionResponse,
  ProvisionResponseSchema,
  ProvisionService,
} from "../../shared/gen/sidero/link/provision_pb.ts";
import { WireGuardOverGRPCService } from "../../shared/gen/sidero/link/wireguard_pb.ts";
import { endpointsToWire } from "../../shared/siderolink/endpoints.ts";
import { canonicalPeerAddress } from "../../shared/siderolink/relay-api.ts";
import type { Endpoint } from "../../shared/wireguard/bind.ts";
import type { UdpEndpoint } from "../bind/endpoint.ts";
import { createUdpBind, type UdpBind } from "../bind/udp.ts";
import type { Logger } from "../log.ts";
import { LogThrottle } from "../log-throttle.ts";
import { createProvisionTransport, type ProvisionProtocol } from "../provision-client.ts";
import { ensureStateDirectory } from "../state.ts";
import type { StatusSnapshot } from "../status.ts";
import { GatewayNode, type MachineMode, type NodeReport } from "./gateway-node.ts";
import { type LanConnection, type LanServer, startLanServer } from "./lan-server.ts";
import { createMachineStreams } from "./machine-stream.ts";
import { createProvisionForwarder } from "./provision-forwarder.ts";
import { openRelayTunnel, type RelayTarget } from "./relay-tunnel.ts";
import { UdpMachines } from "./udp-machines.ts";

/** Talos keeps a 25 s keepalive: a machine silent this long has missed three. */
export const DEFAULT_IDLE_TIMEOUT_MS = 90_000;
/**
 * A failed LAN TLS handshake is logged once a minute per LAN address, for up to 1,024 addresses a
 * minute; more addresses than that share one line (log-throttle.ts).
 */
const TLS_ERROR_LOG_INTERVAL_MS = 60_000;
const TLS_ERROR_LOG_SOURCES = 1024;

/** Why the gateway refused something before any machine was known. */
export const GatewayDropReason = {
  /** A UDP datagram from a LAN address no machine provisioned from. */
  UnknownSource: "unknownSource",
  /** A CreateStream whose x-siderolink-ipv6-addr is not an address. */
  PeerNotAllowed: "peerNotAllowed",
} as const;
export type GatewayDropReason = (typeof GatewayDropReason)[keyof typeof GatewayDropReason];

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface GatewayOptions {
  readonly relay: RelayTarget;
  readonly provisionProtocol: ProvisionProtocol;
  readonly listen: HostPort;
  readonly lanTls?: { readonly certFile: string; readonly keyFile: string } | undefined;
  /** The LAN UDP endpoint for machines on kernel WireGuard; none: every machine tunnels. */
  readonly wireguardListen?: HostPort | undefined;
  readonly idleTimeoutMs: number;
  readonly stateDirectory: string;
  /** Names the status socket (`status --iface NAME`). */
  readonly name: string;
  readonly log: Logger;
  readonly now?: () => number;
}

export interface GatewayReport {
  readonly network: string;
  readonly listen: string;
  readonly wireguardListen: string | null;
  /** Provision calls by outcome: "ok" or the relay's gRPC code. */
  readonly provisions: Readonly<Record<string, number>>;
  /** LAN connections that failed the TLS handshake (`--tls-cert`): plaintext, untrusted CA. */
  readonly lanTlsFailures: number;
  readonly udpMachines: number;
  readonly nodes: readonly NodeReport[];
}

export class Gateway {
  readonly #options: GatewayOptions;
  readonly #now: () => number;
  readonly #startedAt = new Date().toISOString();
  readonly #nodes = new Map<string, GatewayNode>();
  readonly #provisions: Record<string, number> = {};
  readonly #drops: Record<GatewayDropReason, number> = { unknownSource: 0, peerNotAllowed: 0 };
  #lanTlsFailures = 0;
  /** One line per LAN address a minute: a machine set up wrong retries every few seconds. */
  readonly #tlsErrorLines: LogThrottle;
  #udpMachines: UdpMachines | undefined;
  #udp: UdpBind | undefined;
  #lan: LanServer | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;

  constructor(options: GatewayOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#tlsErrorLines = new LogThrottle({
      intervalMs: TLS_ERROR_LOG_INTERVAL_MS,
      maxSources: TLS_ERROR_LOG_SOURCES,
      now: this.#now,
    });
  }

  /** The LAN port serving gRPC (the chosen one when `listen.port` was 0). */
  get port(): number {
    return this.#lan?.port ?? 0;
  }

  /** The LAN UDP port, or 0 without `wireguardListen`. */
  get udpPort(): number {
    return this.#udp?.port ?? 0;
  }

  async start(): Promise<void> {
    const { relay, log } = this.#options;
    ensureStateDirectory(this.#options.stateDirectory);
    this.#udpMachines = new UdpMachines(this.#options.stateDirectory);
    const udpListen = this.#options.wireguardListen;
    if (udpListen !== undefined) {
      const udp = createUdpBind(udpListen);
      await udp.open((datagrams, from) => this.#fromUdp(datagrams, from));
      this.#udp = udp;
    }
    const provisionTransport = createProvisionTransport(
      relay.api,
      this.#options.provisionProtocol,
      relay.tls,
      relay.proxy,
    );
    this.#lan = await startLanServer({
      ...this.#options.listen,
      tls: this.#options.lanTls,
      // Talos dials TLS for any scheme but grpc://; a machine set up otherwise fails here only.
      onTlsError: (remote, error) => {
        this.#lanTlsFailures++;
        const held = this.#tlsErrorLines.admit(remote);
        if (held === undefined) return;
        log.warn(
          "a machine's TLS handshake failed: its siderolink.api must be https://GATEWAY:PORT and it must trust this gateway's certificate",
          {
            lan: remote === "" ? null : remote,
            code: (error as NodeJS.ErrnoException).code ?? null,
            error: error.message.trim(),
            ...(held > 0 ? { sameSinceLastLine: held } : {}),
          },
        );
      },
      routes: (router: ConnectRouter) => {
        router.service(
          ProvisionService,
          createProvisionForwarder({
            relay: provisionTransport,
            network: relay.network,
            answer: (request, response, lan) => this.#answer(request, response, lan),
            count: (outcome) => {
              this.#provisions[outcome] = (this.#provisions[outcome] ?? 0) + 1;
            },
          }),
        );
        router.service(
          WireGuardOverGRPCService,
          createMachineStreams(
            (peerAddrPort) => this.#node(peerAddrPort, "grpc"),
            () => {
              this.#drops.peerNotAllowed++;
            },
          ),
        );
      },
    });
    const timeout = this.#options.idleTimeoutMs;
    this.#sweep = setInterval(() => this.#closeIdle(), Math.min(15_000, Math.ceil(timeout / 3)));
    log.info("gateway serving", {
      listen: `${this.#options.listen.host}:${this.#lan.port}`,
      tls: this.#options.lanTls !== undefined,
      wireguardListen: udpListen ? `${udpListen.host}:${this.#udp?.port}` : null,
      relay: relay.origin,
      network: relay.network,
      transport: relay.transport,
      udpMachines: this.#udpMachines.size,
    });
  }

  /** The relay's Provision answer as this machine gets it. */
  #answer(
    request: ProvisionRequest,
    response: ProvisionResponse,
    lan: LanConnection,
  ): ProvisionResponse {
    const machines = this.#udpMachines!;
    const peerAddrPort = response.grpcPeerAddrPort;
    // A relay that answers with UDP endpoints of its own is reachable without the gateway.
    if (canonicalPeerAddress(peerAddrPort) === undefined) return response;
    const udp = this.#udp;
    if (request.wireguardOverGrpc === true || udp === undefined) {
      machines.delete(lan.remote);
      this.#node(peerAddrPort, "grpc").touch("grpc", lan.remote);
      this.#options.log.info("machine provisioned for a gRPC tunnel", {
        lan: lan.remote,
        machine: peerAddrPort,
      });
      return response;
    }
    machines.set(lan.remote, peerAddrPort);
    this.#node(peerAddrPort, "udp").touch("udp", undefined);
    const endpoint = this.#udpEndpoint(lan.local, udp.port);
    this.#options.log.info("machine provisioned for UDP", {
      lan: lan.remote,
      machine: peerAddrPort,
      endpoint,
    });
    return create(ProvisionResponseSchema, {
      ...response,
      serverEndpoint: endpointsToWire([endpoint]),
      grpcPeerAddrPort: "",
    });
  }

  /** `host:port` of the UDP listener as the machine reaches it. */
  #udpEndpoint(localAddress: string, port: number): string {
    const host = this.#options.wireguardListen!.host;
    const address = host === "" || host === "0.0.0.0" || host === "::" ? localAddress : host;
    return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
  }

  #fromUdp(datagrams: readonly Uint8Array[], from: Endpoint): void {
    const peerAddrPort = this.#udpMachines?.get((from as UdpEndpoint).address);
    if (peerAddrPort === undefined) {
      this.#drops.unknownSource += datagrams.length;
      return;
    }
    this.#node(peerAddrPort, "udp").fromMachine(datagrams, from);
  }

  #node(peerAddrPort: string, mode: MachineMode): GatewayNode {
    const key = canonicalPeerAddress(peerAddrPort)!;
    let node = this.#nodes.get(key);
    if (node === undefined) {
      const log = this.#options.log.with({ machine: peerAddrPort });
      node = new GatewayNode({
        peerAddrPort,
        mode,
        openTunnel: (handlers) =>
          openRelayTunnel(this.#options.relay, peerAddrPort, { ...handlers, log }),
        sendUdp: (datagrams, to) => this.#udp?.send(datagrams, to),
        // The transport has logged the end (GATEWAY_TUNNEL_WORDS).
        onRefused: (refused) => {
          if (this.#nodes.get(key) === refused) this.#nodes.delete(key);
          this.#udpMachines?.deletePeer(refused.peerAddrPort);
        },
        log,
        now: this.#now,
      });
      this.#nodes.set(key, node);
    }
    return node;
  }

  #closeIdle(): void {
    const now = this.#now();
    for (const [key, node] of this.#nodes) {
      if (!node.idle(now, this.#options.idleTimeoutMs)) continue;
      this.#nodes.delete(key);
      this.#options.log.info("machine silent; its relay tunnel closed", {
        machine: node.peerAddrPort,
        idleTimeoutMs: this.#options.idleTimeoutMs,
      });
      void node.close();
    }
  }

  async snapshot(): Promise<StatusSnapshot> {
    const now = this.#now();
    const nodes = [...this.#nodes.values()].map((node) => node.report(now));
    const transport = {
      kind: this.#options.relay.transport,
      choice: this.#options.relay.transport,
      reason:
        this.#options.relay.transport === "auto"
          ? "each machine's tunnel chooses for itself: see gateway.nodes"
          : null,
      state: nodes.every((node) => node.relay.state === "connected") ? "connected" : "degraded",
      lastError: nodes.find((node) => node.relay.lastError !== null)?.relay.lastError ?? null,
      connects: 0,
      rxDatagrams: 0,
      txDatagrams: 0,
      rxBytes: 0,
      txBytes: 0,
    };
    const drops: Record<string, number> = { ...this.#drops };
    for (const node of nodes) {
      transport.connects += node.relay.connects;
      transport.rxDatagrams += node.toMachine.datagrams;
      transport.txDatagrams += node.fromMachine.datagrams;
      transport.rxBytes += node.toMachine.bytes;
      transport.txBytes += node.fromMachine.bytes;
      for (const [reason, count] of Object.entries(node.drops))
        drops[reason] = (drops[reason] ?? 0) + count;
    }
    const { listen, wireguardListen } = this.#options;
    return {
      role: "gateway",
      iface: this.#options.name,
      backend: "none",
      pid: process.pid,
      startedAt: this.#startedAt,
      relay: this.#options.relay.origin,
      up: this.#lan !== undefined && transport.state === "connected",
      transport,
      addresses: { local: `${listen.host}:${this.port}`, server: null, virtual: null },
      peers: [],
      drops,
      gateway: {
        network: this.#options.relay.network,
        listen: `${listen.host}:${this.port}`,
        wireguardListen: wireguardListen ? `${wireguardListen.host}:${this.udpPort}` : null,
        provisions: { ...this.#provisions },
        lanTlsFailures: this.#lanTlsFailures,
        udpMachines: this.#udpMachines?.size ?? 0,
        nodes,
      },
    };
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep);
    const nodes = [...this.#nodes.values()];
    this.#nodes.clear();
    await Promise.all(nodes.map((node) => node.close()));
    await this.#lan?.close();
    await this.#udp?.close();
  }
}
