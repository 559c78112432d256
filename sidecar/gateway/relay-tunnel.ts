/**
 * The gateway's way to the relay: the relay's URL as the provisioning client and the tunnel
 * transports take it, and one tunnel per machine, opened with the node role's own transports
 * (sidecar/transport/) and tagged with the machine's `grpc_peer_addr_port`, through the forward
 * proxy when one is set.
 */
import type { ApiUrl } from "../../shared/siderolink/api-url.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { TlsSettings } from "../tls.ts";
import { createAutoTransport } from "../transport/auto.ts";
import { createGrpcNodeTransport } from "../transport/grpc.ts";
import { createHttpTunnelTransport, httpTunnelUrl } from "../transport/http-tunnel.ts";
import { probeWebSocket } from "../transport/probe.ts";
import type {
  NodeTransport,
  TransportHandlers,
  TransportKind,
  TunnelWords,
} from "../transport/transport.ts";
import { createWebSocketTransport, tunnelUrl } from "../transport/websocket.ts";

export const GATEWAY_TRANSPORT_KINDS = ["websocket", "grpc", "http", "auto"] as const;
export type GatewayTransportKind = (typeof GATEWAY_TRANSPORT_KINDS)[number];

export interface RelayTarget {
  /** `http(s)://host:port`. */
  readonly origin: string;
  /** The same relay as the provisioning client and the gRPC transport take it. */
  readonly api: ApiUrl;
  readonly network: string;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
  readonly transport: GatewayTransportKind;
}

/**
 * The transports' log lines as the gateway's: the tunnel is one machine's (its virtual address is
 * on every line), and a tunnel the relay ends for good is the machine's to provision again.
 */
export const GATEWAY_TUNNEL_WORDS: TunnelWords = {
  stream: "machine's relay tunnel",
  afterEnd: "its stream ends and the gateway forgets it until it provisions again",
};

/** The relay's base URL (`http://` or `https://`, checked by the caller) as an API URL. */
export function relayApiUrl(url: URL): ApiUrl {
  const tls = url.protocol === "https:";
  const port = url.port === "" ? (tls ? 443 : 80) : Number(url.port);
  return {
    scheme: tls ? "https" : "http",
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port,
    tls,
    authority: url.host,
    origin: url.origin,
    path: "",
    grpcTunnel: true,
  };
}

/** Opens the relay tunnel of one machine; it reconnects by itself until closed. */
export function openRelayTunnel(
  relay: RelayTarget,
  peerAddrPort: string,
  machineHandlers: TransportHandlers,
): NodeTransport {
  const handlers = { ...machineHandlers, words: GATEWAY_TUNNEL_WORDS };
  if (relay.transport !== "auto") return openTunnel(relay, relay.transport, peerAddrPort, handlers);
  return createAutoTransport({
    preferred: "websocket",
    create: (kind, isCurrent) =>
      openTunnel(relay, kind, peerAddrPort, {
        ...handlers,
        onTerminal: (reason) => {
          if (isCurrent()) handlers.onTerminal(reason);
        },
      }),
    probe: () => probeWebSocket(tunnelUrl(relay.origin, relay.network), relay.tls, relay.proxy),
    log: handlers.log,
  });
}

function openTunnel(
  relay: RelayTarget,
  kind: TransportKind,
  peerAddrPort: string,
  handlers: TransportHandlers,
): NodeTransport {
  switch (kind) {
    case "grpc":
      return createGrpcNodeTransport({
        ...handlers,
        api: relay.api,
        peerAddrPort,
        tls: relay.tls,
        proxy: relay.proxy,
      });
    case "http":
      return createHttpTunnelTransport({
        ...handlers,
        url: httpTunnelUrl(relay.origin, relay.network),
        peerAddrPort,
        tls: relay.tls,
        proxy: relay.proxy,
      });
    case "websocket":
      return createWebSocketTransport({
        ...handlers,
        url: tunnelUrl(relay.origin, relay.network),
        peerAddrPort,
        tls: relay.tls,
        proxy: relay.proxy,
      });
  }
}
