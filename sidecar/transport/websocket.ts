/**
 * The node stream over WebSocket: `GET /v1/networks/<network>/tunnel` on the relay, upgraded,
 * with `x-siderolink-ipv6-addr: <grpc_peer_addr_port>`. Binary messages are NODE_DATAGRAMS
 * frames both ways (shared/tunnel/frame.ts); the text pair ping/pong proves liveness.
 */
import { PEER_ADDRESS_HEADER, tunnelPath } from "../../shared/siderolink/relay-api.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { TlsSettings } from "../tls.ts";
import { createNodeStreamTransport } from "./node-stream.ts";
import { superviseWebSocket } from "./supervised-websocket.ts";
import type { NodeTransport, TransportHandlers } from "./transport.ts";

/** `ws(s)://authority/v1/networks/<network>/tunnel` for an API origin (`http(s)://authority`). */
export function tunnelUrl(origin: string, network: string): string {
  return `${origin.replace(/^http/, "ws")}${tunnelPath(network)}`;
}

export interface WebSocketTransportOptions extends TransportHandlers {
  readonly url: string;
  /** `grpc_peer_addr_port` from Provision. */
  readonly peerAddrPort: string;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
}

export function createWebSocketTransport(options: WebSocketTransportOptions): NodeTransport {
  return createNodeStreamTransport("websocket", options.url, options, (hooks) =>
    superviseWebSocket({
      ...hooks,
      url: options.url,
      headers: { [PEER_ADDRESS_HEADER]: options.peerAddrPort },
      tls: options.tls,
      proxy: options.proxy,
      log: options.log,
    }),
  );
}
