/**
 * The node stream over the HTTP-only tunnel (shared/tunnel/http-tunnel.ts): gRPC-web Receive and
 * Send under `/v1/networks/<network>/tunnel`, with `x-siderolink-ipv6-addr` on every request, for
 * networks whose proxies let no WebSocket or HTTP/2 through. The same NODE_DATAGRAMS frames as the
 * WebSocket, the same close codes.
 */
import { PEER_ADDRESS_HEADER, tunnelPath } from "../../shared/siderolink/relay-api.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { TlsSettings } from "../tls.ts";
import { createNodeStreamTransport } from "./node-stream.ts";
import { superviseHttpTunnel } from "./supervised-http-tunnel.ts";
import type { NodeTransport, TransportHandlers } from "./transport.ts";

/** `http(s)://authority/v1/networks/<network>/tunnel` for an API origin. */
export function httpTunnelUrl(origin: string, network: string): string {
  return `${origin}${tunnelPath(network)}`;
}

export interface HttpTunnelTransportOptions extends TransportHandlers {
  readonly url: string;
  readonly peerAddrPort: string;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
}

export function createHttpTunnelTransport(options: HttpTunnelTransportOptions): NodeTransport {
  return createNodeStreamTransport("http", options.url, options, (hooks) =>
    superviseHttpTunnel({
      ...hooks,
      baseUrl: options.url,
      headers: { [PEER_ADDRESS_HEADER]: options.peerAddrPort },
      tls: options.tls,
      proxy: options.proxy,
      log: options.log,
    }),
  );
}
