/**
 * A WebSocket to the relay that stays up: the node's tunnel stream and the server's uplink
 * both run on it. It connects without compression (the payload is ciphertext) and with the
 * frame size limit, sends PING_TEXT every PING_INTERVAL_MS and drops a connection silent for
 * LIVENESS_TIMEOUT_MS, closes on a malformed frame, and reconnects after a jittered delay
 * unless the relay closed with a code that ends the stream for good.
 */
import { WebSocket } from "ws";
import { FrameError } from "../../shared/tunnel/decode.ts";
import {
  CloseCode,
  LIVENESS_TIMEOUT_MS,
  MAX_FRAME_SIZE,
  PING_INTERVAL_MS,
  PING_TEXT,
} from "../../shared/tunnel/frame.ts";
import { createProxyAgent, proxyFor } from "../net/proxy.ts";
import { tlsOptions } from "../tls.ts";
import {
  createReconnector,
  type FrameStream,
  type SupervisedStreamOptions,
  type TransportState,
} from "./transport.ts";

/** How long an upgrade may take before the attempt counts as failed. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long a closing handshake may take at shutdown before the socket is cut. */
const CLOSE_TIMEOUT_MS = 2000;

export interface SupervisedWebSocketOptions extends SupervisedStreamOptions<WebSocket, Buffer> {
  readonly url: string;
}

export interface SupervisedWebSocket extends FrameStream {
  readonly state: TransportState;
  readonly lastError: string | undefined;
  /** The current connection when it is open, else undefined. */
  openSocket(): WebSocket | undefined;
  /** Stops for good; closes the connection with `reason`, cut after CLOSE_TIMEOUT_MS. */
  close(reason: string): Promise<void>;
}

export function superviseWebSocket(options: SupervisedWebSocketOptions): SupervisedWebSocket {
  const { log, stats, what } = options;
  let state: TransportState = "connecting";
  let lastError: string | undefined;
  let socket: WebSocket | undefined;
  let pingTimer: ReturnType<typeof setInterval> | undefined;
  let lastReceived = 0;
  const target = new URL(options.url);
  const proxy = proxyFor(options.proxy, target);
  const agent = proxy ? createProxyAgent(proxy, target.protocol === "wss:") : undefined;
  const reconnector = createReconnector({
    what,
    log,
    intervalMs: options.retryIntervalMs,
    reconnect: () => {
      if (state === "retrying") connect();
    },
  });

  const connect = (): void => {
    state = "connecting";
    options.onConnecting?.();
    const ws = new WebSocket(options.url, {
      headers: options.headers,
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_SIZE,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      ...(agent ? { agent } : {}),
      ...tlsOptions(options.tls),
    });
    socket = ws;
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      state = "connected";
      stats.connects++;
      lastReceived = Date.now();
      options.onOpen?.(ws);
      log.info(`${what} connected`, options.connectedFields);
      pingTimer = setInterval(() => {
        if (Date.now() - lastReceived > LIVENESS_TIMEOUT_MS) {
          log.warn(`${what} silent too long; reconnecting`, {
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
      try {
        options.onBinary(ws, data);
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        log.warn("malformed frame from the relay; reconnecting", { error: error.message });
        ws.close(error.closeCode, error.message);
      }
    });
    // An HTTP answer instead of the upgrade (a proxy that drops Upgrade: 426, 400) says more
    // than the error terminating the attempt reports after it.
    let answered = false;
    ws.on("unexpected-response", (_request, response) => {
      answered = true;
      lastError = `HTTP ${response.statusCode} from ${options.url}`;
      ws.terminate();
    });
    ws.on("error", (error) => {
      if (!answered) lastError = error.message;
    });
    ws.on("close", (code: number, reason: Buffer) => {
      clearInterval(pingTimer);
      pingTimer = undefined;
      options.onClosed?.();
      if (socket !== ws || state === "stopped") return;
      socket = undefined;
      const text = reason.toString();
      if (code !== CloseCode.Abnormal || lastError === undefined)
        lastError = `closed with ${code}${text ? ` "${text}"` : ""}`;
      if (options.endsForGood(code)) {
        state = "stopped";
        options.onEnded(code, text);
        return;
      }
      state = "retrying";
      reconnector.schedule(lastError);
    });
  };

  connect();

  return {
    get state() {
      return state;
    },
    get lastError() {
      return lastError;
    },
    openSocket() {
      const ws = socket;
      return ws !== undefined && ws.readyState === WebSocket.OPEN ? ws : undefined;
    },
    async close(reason) {
      state = "stopped";
      reconnector.cancel();
      clearInterval(pingTimer);
      const ws = socket;
      socket = undefined;
      if (ws === undefined || ws.readyState === WebSocket.CLOSED) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          ws.terminate();
          resolve();
        }, CLOSE_TIMEOUT_MS);
        ws.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
        ws.close(CloseCode.Normal, reason);
      });
    },
  };
}
