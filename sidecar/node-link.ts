/**
 * The node's link to the management server: the interface, the server peer, the tunnel when
 * the server asks for one, and the monitor that keeps them up. The handshake is checked every
 * 30 s; after 275 s without one the next server endpoint is tried, and when every endpoint
 * failed (or the relay forgot the node) the node provisions again.
 */

import { parseAddrPort } from "../shared/net/ip.ts";
import type { ApiUrl } from "../shared/siderolink/api-url.ts";
import { parseKey } from "../shared/siderolink/keys.ts";
import { parseJoinToken } from "../shared/siderolink/relay-api.ts";
import type { StreamEndpoint } from "../shared/wireguard/stream-bind.ts";
import {
  type BackendKind,
  LINK_MTU,
  PERSISTENT_KEEPALIVE_SECONDS,
  type WireGuardBackend,
} from "./backend/backend.ts";
import { createBackend } from "./daemon.ts";
import { ExitCode, SidecarError } from "./exit-codes.ts";
import { type Shutdown, sleep } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { CHECK_INTERVAL_MS, EndpointCycle, handshakeFresh } from "./monitor.ts";
import { ip, setLinkUp } from "./net/iproute2.ts";
import type { ProxySettings } from "./net/proxy.ts";
import type { ProvisionResult } from "./provision-client.ts";
import { peerReport, type StatusSnapshot } from "./status.ts";
import type { TlsSettings } from "./tls.ts";
import { type AutoTransport, createAutoTransport } from "./transport/auto.ts";
import { createGrpcNodeTransport } from "./transport/grpc.ts";
import { createHttpTunnelTransport, httpTunnelUrl } from "./transport/http-tunnel.ts";
import { probeGrpc, probeWebSocket } from "./transport/probe.ts";
import {
  type NodeTransport,
  TERMINAL_RETRY_MS,
  type TransportChoice,
  type TransportKind,
} from "./transport/transport.ts";
import { createWebSocketTransport, tunnelUrl } from "./transport/websocket.ts";

interface NodeLinkOptions {
  readonly api: ApiUrl;
  readonly iface: string;
  readonly backendKind: BackendKind;
  readonly wireguardGo: string | undefined;
  readonly privateKey: Uint8Array;
  readonly tls: TlsSettings;
  readonly log: Logger;
  readonly shutdown: Shutdown;
  readonly proxy: ProxySettings;
  readonly transportChoice: TransportChoice;
  readonly network: string | undefined;
  readonly reprovision: () => Promise<ProvisionResult>;
}

export class NodeLink {
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
  /** Datagrams WireGuard sent while there was no transport to take them (provisioning again). */
  #withoutTransport = 0;

  constructor(options: NodeLinkOptions) {
    this.#options = options;
  }

  async start(result: ProvisionResult): Promise<void> {
    const { log } = this.#options;
    const tunnel = result.grpcPeerAddrPort !== "";
    const options = {
      iface: this.#options.iface,
      privateKey: this.#options.privateKey,
      sink: (datagrams: readonly Uint8Array[]) => {
        const transport = this.#transport;
        if (transport) transport.send(datagrams);
        else this.#withoutTransport += datagrams.length;
      },
      udp: !tunnel,
      log: (message: string) => log.debug(message),
    };
    this.#backend = await createBackend(
      this.#options.backendKind,
      options,
      this.#options.wireguardGo,
    );
    log.info("interface created", {
      iface: this.#backend.iface,
      backend: this.#backend.kind,
      mtu: LINK_MTU,
    });
    await this.#apply(result, undefined);
    this.#monitor = setInterval(() => void this.#check(), CHECK_INTERVAL_MS);
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
      // The transport before the peer: WireGuard sends its first handshake initiation as soon
      // as it has the peer, and only a transport that exists can hold it until its stream is
      // open; without one it is lost and the handshake waits for WireGuard's 5 s retry.
      this.#startTransport(result);
    }
    await this.#setServerPeer(result);
    this.#result = result;
    log.info("link configured", {
      address: result.nodeAddressPrefix,
      server: result.serverAddress,
      serverKey: result.serverPublicKey,
      tunnel,
    });
    // In tunnel mode the endpoint is the node's virtual address, which names its tunnel stream:
    // kept out of info-level logs, which travel further than the node.
    log.debug("server endpoint", { endpoint: this.#cycle.current });
  }

  async #setServerPeer(result: ProvisionResult): Promise<void> {
    await this.#backend!.setPeer({
      publicKey: parseKey(result.serverPublicKey, "server_public_key"),
      allowedIps: [`${result.serverAddress}/128`],
      endpoint:
        this.#serverEndpoint && result.grpcPeerAddrPort !== ""
          ? this.#serverEndpoint
          : this.#cycle!.current,
      persistentKeepalive: PERSISTENT_KEEPALIVE_SECONDS,
    });
  }

  #startTransport(result: ProvisionResult): void {
    const { api, log, tls, proxy, transportChoice } = this.#options;
    // The WebSocket and HTTP-only tunnels name the network in their path; gRPC finds it by address.
    const network = (): string => this.#options.network ?? networkFromJoinToken(api.joinToken);
    const create = (kind: TransportKind, isCurrent: () => boolean = () => true): NodeTransport => {
      const handlers = {
        onDatagrams: (datagrams: readonly Uint8Array[]) => {
          if (this.#serverEndpoint) this.#backend?.deliver(datagrams, this.#serverEndpoint);
        },
        onTerminal: () => {
          if (isCurrent()) void this.#reprovisionLater(TERMINAL_RETRY_MS);
        },
        log: log.with({ transport: kind }),
      };
      const peerAddrPort = result.grpcPeerAddrPort;
      switch (kind) {
        case "grpc":
          return createGrpcNodeTransport({ ...handlers, api, peerAddrPort, tls, proxy });
        case "http":
          return createHttpTunnelTransport({
            ...handlers,
            url: httpTunnelUrl(api.origin, network()),
            peerAddrPort,
            tls,
            proxy,
          });
        case "websocket":
          return createWebSocketTransport({
            ...handlers,
            url: tunnelUrl(api.origin, network()),
            peerAddrPort,
            tls,
            proxy,
          });
      }
    };
    if (transportChoice !== "auto") {
      this.#transport = create(transportChoice);
      return;
    }
    this.#transport = createAutoTransport({
      preferred: api.tls ? "websocket" : "grpc",
      create,
      probe: (kind) =>
        kind === "grpc"
          ? probeGrpc(api.origin, tls, proxy)
          : probeWebSocket(tunnelUrl(api.origin, network()), tls, proxy),
      log,
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
        choice: this.#options.transportChoice,
        reason: transport && "reason" in transport ? (transport as AutoTransport).reason : null,
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
      peers: peers.map((peer) => peerReport(peer, now)),
      drops: {
        ...backend.drops(),
        tunnelNotConnected: this.#withoutTransport + (transport?.stats.dropsNotConnected ?? 0),
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
  const token = joinToken === undefined ? undefined : parseJoinToken(joinToken);
  if (token === undefined) {
    throw new SidecarError(
      ExitCode.BadUrl,
      "cannot tell the relay network from the join token (expected NETWORK.SECRET): pass --network, or --transport grpc",
    );
  }
  return token.network;
}
