/**
 * The node stream over WebSocket: `GET /v1/networks/<network>/tunnel` on the relay, upgraded,
 * with `x-siderolink-ipv6-addr: <grpc_peer_addr_port>`. Binary messages are NODE_DATAGRAMS
 * frames both ways (shared/tunnel/frame.ts); the text pair ping/pong proves liveness.
 */
import { WebSocket } from "ws";
import { decodeNodeDatagrams, FrameError } from "../../shared/tunnel/decode.ts";
import { createBatchEncoder } from "../../shared/tunnel/encode.ts";
import {
  CloseCode,
  LIVENESS_TIMEOUT_MS,
  MAX_FRAME_SIZE,
  PING_INTERVAL_MS,
  PING_TEXT,
} from "../../shared/tunnel/frame.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";
import {
  createTransportStats,
  HighWaterBytes,
  jittered,
  type NodeTransport,
  RetryIntervalMs,
  type TransportHandlers,
  type TransportState,
} from "./transport.ts";

export const PeerAddressHeader = "x-siderolink-ipv6-addr";
/** How long an upgrade may take before the attempt counts as failed. */
const HandshakeTimeoutMs = 10_000;

/** Close codes after which reconnecting is pointless: the relay no longer knows this node. */
const TerminalCodes: ReadonlySet<number> = new Set([
  CloseCode.PeerNotAllowed,
  CloseCode.Replaced,
  CloseCode.PeerRemoved,
]);

/** `ws(s)://authority/v1/networks/<network>/tunnel` for an API origin (`http(s)://authority`). */
export function tunnelUrl(origin: string, network: string): string {
  return `${origin.replace(/^http/, "ws")}/v1/networks/${encodeURIComponent(network)}/tunnel`;
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
  const encoder = createBatchEncoder(false);
  const views: Uint8Array[] = [];
  let state: TransportState = "connecting";
  let lastError: string | undefined;
  let socket: WebSocket | undefined;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let pingTimer: ReturnType<typeof setInterval> | undefined;
  let lastReceived = 0;

  const connect = (): void => {
    state = "connecting";
    const ws = new WebSocket(options.url, {
      headers: { [PeerAddressHeader]: options.peerAddrPort },
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_SIZE,
      handshakeTimeout: HandshakeTimeoutMs,
      ...tlsOptions(options.tls),
    });
    socket = ws;
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      state = "connected";
      stats.connects++;
      lastReceived = Date.now();
      log.info("tunnel stream connected", { transport: "websocket", url: options.url });
      pingTimer = setInterval(() => {
        if (Date.now() - lastReceived > LIVENESS_TIMEOUT_MS) {
          log.warn("tunnel stream silent too long; reconnecting", {
            silentMs: Date.now() - lastReceived,
          });
          ws.terminate();
          return;
        }
        ws.send(PING_TEXT);
      }, PING_INTERVAL_MS);
    });
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      lastReceived = Date.now();
      if (!isBinary) return;
      let count: number;
      try {
        count = decodeNodeDatagrams(data, views);
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        log.warn("malformed frame from the relay; reconnecting", { error: error.message });
        ws.close(error.closeCode, error.message);
        return;
      }
      views.length = count;
      stats.rxDatagrams += count;
      for (let i = 0; i < count; i++) stats.rxBytes += views[i].length;
      options.onDatagrams(views);
    });
    ws.on("unexpected-response", (_request, response) => {
      lastError = `HTTP ${response.statusCode} from ${options.url}`;
      ws.terminate();
    });
    ws.on("error", (error) => {
      lastError = error.message;
    });
    ws.on("close", (code: number, reason: Buffer) => {
      clearInterval(pingTimer);
      pingTimer = undefined;
      if (socket !== ws || state === "stopped") return;
      socket = undefined;
      const text = reason.toString();
      if (code !== 1006 || lastError === undefined)
        lastError = `closed with ${code}${text ? ` "${text}"` : ""}`;
      if (TerminalCodes.has(code)) {
        state = "stopped";
        log.warn("the relay ended the tunnel stream; provisioning again", { code, reason: text });
        options.onTerminal(text || `close code ${code}`);
        return;
      }
      scheduleRetry();
    });
  };

  const scheduleRetry = (): void => {
    state = "retrying";
    const delay = jittered(options.retryIntervalMs ?? RetryIntervalMs);
    log.warn("tunnel stream down; retrying", { error: lastError, retryInMs: delay });
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      if (state === "retrying") connect();
    }, delay);
  };

  connect();

  return {
    kind: "websocket",
    get state() {
      return state;
    },
    stats,
    get lastError() {
      return lastError;
    },
    send(datagrams) {
      const ws = socket;
      if (state !== "connected" || ws === undefined || ws.readyState !== WebSocket.OPEN) {
        stats.dropsNotConnected += datagrams.length;
        return;
      }
      if (ws.bufferedAmount > HighWaterBytes) {
        stats.dropsCongested += datagrams.length;
        return;
      }
      for (const datagram of datagrams) {
        if (!encoder.add(datagram)) {
          ws.send(encoder.finish());
          encoder.add(datagram);
        }
        stats.txDatagrams++;
        stats.txBytes += datagram.length;
      }
      // ws masks a client frame into a fresh buffer, so the encoder's buffer is free on return.
      if (encoder.count > 0) ws.send(encoder.finish());
    },
    async close() {
      state = "stopped";
      clearTimeout(retryTimer);
      clearInterval(pingTimer);
      const ws = socket;
      socket = undefined;
      if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          ws.terminate();
          resolve();
        }, 2000);
        ws.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        ws.close(CloseCode.Normal, "node shutting down");
      });
    },
  };
}
