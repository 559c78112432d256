/**
 * The server's uplink to the relay: `GET /v1/networks/<network>/uplink` upgraded to a WebSocket
 * with `Authorization: Bearer <admin secret>`. It says HELLO with the server's public key,
 * applies the peer messages through a PeerReconciler and acknowledges each once applied, and
 * carries PEER_DATAGRAMS both ways: each datagram tagged with the virtual address of its node.
 *
 * It reconnects by itself (every RetryIntervalMs, jittered) and reconciles on every connection.
 * A refused admin secret or protocol version is fatal: `onFatal` reports it.
 */
import { WebSocket } from "ws";
import {
  decodeControl,
  decodePeerDatagrams,
  FrameError,
  frameType,
} from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import {
  CloseCode,
  FrameType,
  LIVENESS_TIMEOUT_MS,
  MAX_FRAME_SIZE,
  PING_INTERVAL_MS,
  PING_TEXT,
  PROTOCOL_VERSION,
} from "../../shared/tunnel/frame.ts";
import type { JsonLogger } from "../json-log.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";
import {
  createTransportStats,
  HighWaterBytes,
  jittered,
  RetryIntervalMs,
  type TransportState,
  type TransportStats,
} from "../transport/transport.ts";
import type { PeerReconciler } from "./peers.ts";

export interface UplinkOptions {
  /** The relay's base URL, `http(s)://host:port`. */
  readonly relayUrl: string;
  readonly network: string;
  readonly adminSecret: string;
  readonly serverPublicKey: Uint8Array;
  readonly reconciler: PeerReconciler;
  readonly tls: TlsSettings;
  readonly log: JsonLogger;
  /** Datagrams from nodes: `tags[i]` (16 bytes) names the node of `datagrams[i]`. Views. */
  onDatagrams(tags: readonly Uint8Array[], datagrams: readonly Uint8Array[]): void;
  /** The relay refused this uplink for a reason retrying cannot fix. */
  onFatal(reason: string, code: number): void;
  readonly retryIntervalMs?: number;
}

export interface Uplink {
  readonly state: TransportState;
  readonly stats: Readonly<TransportStats>;
  readonly lastError: string | undefined;
  /** Whether the relay's peer list has been applied on the current connection. */
  readonly synced: boolean;
  /** Sends datagrams to nodes: `tags[i]` is the node of `datagrams[i]`. */
  send(datagrams: readonly Uint8Array[], tag: Uint8Array): void;
  close(): Promise<void>;
}

const HandshakeTimeoutMs = 10_000;
const FatalCodes: ReadonlySet<number> = new Set([
  CloseCode.Unauthorized,
  CloseCode.UnsupportedVersion,
]);

export function uplinkUrl(relayUrl: string, network: string): string {
  const base = relayUrl.replace(/\/+$/, "").replace(/^http/, "ws");
  return `${base}/v1/networks/${encodeURIComponent(network)}/uplink`;
}

export function connectUplink(options: UplinkOptions): Uplink {
  const { log, reconciler } = options;
  const url = uplinkUrl(options.relayUrl, options.network);
  const stats = createTransportStats();
  const encoder = createBatchEncoder(true);
  const tags: Uint8Array[] = [];
  const datagrams: Uint8Array[] = [];
  let state: TransportState = "connecting";
  let lastError: string | undefined;
  let socket: WebSocket | undefined;
  let synced = false;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let pingTimer: ReturnType<typeof setInterval> | undefined;
  let lastReceived = 0;
  /** Peer messages are applied strictly in order, one after another. */
  let applying: Promise<void> = Promise.resolve();

  const control = (ws: WebSocket, frame: Uint8Array): void => {
    const message = decodeControl(frame);
    applying = applying.then(async () => {
      try {
        const seq = await reconciler.handle(message);
        if (message.type === FrameType.PeerList && message.last) {
          if (!synced)
            log.info("peers reconciled with the relay", { peers: reconciler.peers.size });
          synced = true;
        }
        if (seq !== undefined && ws.readyState === WebSocket.OPEN) ws.send(encodeAck(seq));
      } catch (error) {
        // Not acknowledged: the relay's Provision times out and the node retries.
        log.error("applying a peer change failed", { error: (error as Error).message });
      }
    });
  };

  const connect = (): void => {
    state = "connecting";
    synced = false;
    reconciler.connectionReset();
    const ws = new WebSocket(url, {
      headers: { authorization: `Bearer ${options.adminSecret}` },
      perMessageDeflate: false,
      maxPayload: MAX_FRAME_SIZE,
      handshakeTimeout: HandshakeTimeoutMs,
      ...tlsOptions(options.tls),
    });
    socket = ws;
    ws.on("open", () => {
      state = "connected";
      stats.connects++;
      lastReceived = Date.now();
      ws.send(encodeHello(PROTOCOL_VERSION, options.serverPublicKey));
      log.info("uplink connected", { url, network: options.network });
      pingTimer = setInterval(() => {
        if (Date.now() - lastReceived > LIVENESS_TIMEOUT_MS) {
          log.warn("uplink silent too long; reconnecting", { silentMs: Date.now() - lastReceived });
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
        if (frameType(data) === FrameType.PeerDatagrams) {
          const count = decodePeerDatagrams(data, tags, datagrams);
          tags.length = count;
          datagrams.length = count;
          stats.rxDatagrams += count;
          for (let i = 0; i < count; i++) stats.rxBytes += datagrams[i].length;
          options.onDatagrams(tags, datagrams);
        } else {
          control(ws, data);
        }
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        log.warn("malformed frame from the relay; reconnecting", { error: error.message });
        ws.close(error.closeCode, error.message);
      }
    });
    ws.on("unexpected-response", (_request, response) => {
      lastError = `HTTP ${response.statusCode} from ${url}`;
      ws.terminate();
    });
    ws.on("error", (error) => {
      lastError = error.message;
    });
    ws.on("close", (code: number, reason: Buffer) => {
      clearInterval(pingTimer);
      pingTimer = undefined;
      synced = false;
      if (socket !== ws || state === "stopped") return;
      socket = undefined;
      const text = reason.toString();
      if (code !== 1006 || lastError === undefined)
        lastError = `closed with ${code}${text ? ` "${text}"` : ""}`;
      if (FatalCodes.has(code)) {
        state = "stopped";
        options.onFatal(text || `close code ${code}`, code);
        return;
      }
      state = "retrying";
      const delay = jittered(options.retryIntervalMs ?? RetryIntervalMs);
      log.warn("uplink down; retrying", { error: lastError, retryInMs: delay });
      retryTimer = setTimeout(() => {
        retryTimer = undefined;
        if (state === "retrying") connect();
      }, delay);
    });
  };

  connect();

  return {
    get state() {
      return state;
    },
    stats,
    get lastError() {
      return lastError;
    },
    get synced() {
      return synced;
    },
    send(batch, tag) {
      const ws = socket;
      if (!synced || ws === undefined || ws.readyState !== WebSocket.OPEN) {
        stats.dropsNotConnected += batch.length;
        return;
      }
      if (ws.bufferedAmount > HighWaterBytes) {
        stats.dropsCongested += batch.length;
        return;
      }
      for (const datagram of batch) {
        if (!encoder.add(datagram, tag)) {
          ws.send(encoder.finish());
          encoder.add(datagram, tag);
        }
        stats.txDatagrams++;
        stats.txBytes += datagram.length;
      }
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
        ws.close(CloseCode.Normal, "server shutting down");
      });
    },
  };
}
