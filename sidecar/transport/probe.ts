/**
 * Whether a transport gets through to the relay now, without opening a node stream: used by
 * `--transport auto` (auto.ts) to move back from the HTTP-only tunnel. Each probe opens the
 * tunnel route with no peer address: the relay completes the WebSocket upgrade (then closes it,
 * "peer not allowed"), or answers gRPC over HTTP/2 with a PermissionDenied status. Either answer
 * means the path carries the transport; a failed upgrade, a proxy's error or a timeout means not.
 */
import http2 from "node:http2";
import { WebSocket } from "ws";
import {
  createProxyAgent,
  http2ProxyConnection,
  type ProxySettings,
  proxyFor,
} from "../net/proxy.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";

const PROBE_TIMEOUT_MS = 10_000;
const CREATE_STREAM_PATH = "/sidero.link.WireGuardOverGRPCService/CreateStream";

/** Whether a WebSocket upgrade to `url` (the tunnel route, ws(s)://) completes. */
export function probeWebSocket(url: string, tlsSettings: TlsSettings, proxies: ProxySettings) {
  const target = new URL(url);
  const proxy = proxyFor(proxies, target);
  return new Promise<boolean>((resolve) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: PROBE_TIMEOUT_MS,
      ...(proxy ? { agent: createProxyAgent(proxy, target.protocol === "wss:") } : {}),
      ...tlsOptions(tlsSettings),
    });
    const done = (works: boolean): void => {
      ws.removeAllListeners();
      ws.on("error", () => {});
      ws.terminate();
      resolve(works);
    };
    ws.on("open", () => done(true));
    ws.on("unexpected-response", () => done(false));
    ws.on("error", () => done(false));
  });
}

/** Whether a gRPC call to the relay's CreateStream gets a gRPC status back over HTTP/2. */
export function probeGrpc(origin: string, tlsSettings: TlsSettings, proxies: ProxySettings) {
  const secure = origin.startsWith("https:");
  const createConnection = http2ProxyConnection(proxies, origin, tlsOptions(tlsSettings));
  return new Promise<boolean>((resolve) => {
    const session = http2.connect(origin, {
      ...(secure ? { ...tlsOptions(tlsSettings), ALPNProtocols: ["h2"] } : {}),
      ...(createConnection ? { createConnection } : {}),
    });
    const timer = setTimeout(() => done(false), PROBE_TIMEOUT_MS);
    const done = (works: boolean): void => {
      clearTimeout(timer);
      session.destroy();
      resolve(works);
    };
    session.on("error", () => done(false));
    const call = session.request({
      ":method": "POST",
      ":path": CREATE_STREAM_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    call.on("response", (headers) => done(headers["grpc-status"] !== undefined));
    call.on("error", () => done(false));
    call.end();
  });
}
