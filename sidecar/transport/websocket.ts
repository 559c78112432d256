/**
 * The node stream over WebSocket: `GET /v1/networks/<network>/tunnel` on the relay, upgraded,
 * with `x-siderolink-ipv6-addr: <grpc_peer_addr_port>`. Binary messages are NODE_DATAGRAMS
 * frames both ways (shared/tunnel/frame.ts); the text pair ping/pong proves liveness.
 */
import { PEER_ADDRESS_HEADER, tunnelPath } from "../../shared/siderolink/relay-api.ts";
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import { decodeNodeDatagrams } from "../../shared/tunnel/decode.ts";
import { createBatchEncoder } from "../../shared/tunnel/encode.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import type { TlsSettings } from "../tls.ts";
import { superviseWebSocket } from "./supervised-websocket.ts";
import {
  createTransportStats,
  HighWaterBytes,
  type NodeTransport,
  type TransportHandlers,
} from "./transport.ts";

/** Close codes after which reconnecting is pointless: the relay no longer knows this node. */
const TerminalCodes: ReadonlySet<number> = new Set([
  CloseCode.PeerNotAllowed,
  CloseCode.Replaced,
  CloseCode.PeerRemoved,
]);

/** `ws(s)://authority/v1/networks/<network>/tunnel` for an API origin (`http(s)://authority`). */
export function tunnelUrl(origin: string, network: string): string {
  return `${origin.replace(/^http/, "ws")}${tunnelPath(network)}`;
}

export interface WebSocketTransportOptions extends TransportHandlers {
  readonly url: string;
  /** `grpc_peer_addr_port` from Provision. */
  readonly peerAddrPort: string;
  readonly tls: TlsSettings;
}

export function createWebSocketTransport(options: WebSocketTransportOptions): NodeTransport {
  const { log } = options;
  const stats = createTransportStats();
  const views: Uint8Array[] = [];
  const stream = superviseWebSocket({
    url: options.url,
    headers: { [PEER_ADDRESS_HEADER]: options.peerAddrPort },
    tls: options.tls,
    log,
    stats,
    what: "tunnel stream",
    connectedFields: { transport: "websocket", url: options.url },
    retryIntervalMs: options.retryIntervalMs,
    onBinary(_ws, data) {
      const count = decodeNodeDatagrams(data, views);
      views.length = count;
      stats.rxDatagrams += count;
      for (let i = 0; i < count; i++) stats.rxBytes += views[i].length;
      options.onDatagrams(views);
    },
    endsForGood: (code) => TerminalCodes.has(code),
    onEnded(code, reason) {
      log.warn("the relay ended the tunnel stream; provisioning again", { code, reason });
      options.onTerminal(reason || `close code ${code}`);
    },
  });

  // ws masks a client frame into a fresh buffer, so the encoder's buffer is free on return.
  const sender = createBatchSender(createBatchEncoder(false), (frame) =>
    stream.openSocket()?.send(frame),
  );

  return {
    kind: "websocket",
    get state() {
      return stream.state;
    },
    stats,
    get lastError() {
      return stream.lastError;
    },
    send(datagrams) {
      const ws = stream.state === "connected" ? stream.openSocket() : undefined;
      if (ws === undefined) {
        stats.dropsNotConnected += datagrams.length;
        return;
      }
      if (ws.bufferedAmount > HighWaterBytes) {
        stats.dropsCongested += datagrams.length;
        return;
      }
      for (const datagram of datagrams) {
        sender.add(datagram);
        stats.txDatagrams++;
        stats.txBytes += datagram.length;
      }
      sender.flush();
    },
    close: () => stream.close("node shutting down"),
  };
}
