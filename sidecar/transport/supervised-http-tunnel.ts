/**
 * The client side of the HTTP-only tunnel (shared/tunnel/http-tunnel.ts), kept up like
 * supervised-websocket.ts keeps a WebSocket: one long `Receive` response carries the relay's
 * frames, and the frames this side sends go out as `Send` POSTs, up to MAX_SENDS_IN_FLIGHT at a
 * time on as many kept-alive connections and numbered so the relay switches them in order, each
 * carrying everything queued while the earlier ones were out (the batch grows with the load and
 * the round trip). Nothing here needs more than HTTP/1.1 requests, so it passes reverse proxies
 * that drop `Upgrade` and forward proxies that only speak plain HTTP.
 *
 * Liveness: an idle side sends an empty Send every KEEPALIVE_INTERVAL_MS, the relay sends an
 * empty message as often; a Receive silent for LIVENESS_TIMEOUT_MS is dropped and opened again.
 * The relay ends a stream with a trailer carrying a WebSocket close code, handled exactly as the
 * WebSocket's close.
 */
import http from "node:http";
import https from "node:https";
import { FrameError } from "../../shared/tunnel/decode.ts";
import { CloseCode, LIVENESS_TIMEOUT_MS, MAX_FRAME_SIZE } from "../../shared/tunnel/frame.ts";
import { decodeGrpcMessage, GrpcStatus } from "../../shared/tunnel/grpc-status.ts";
import {
  CLOSE_CODE_TRAILER,
  createEnvelopeReader,
  decodeFramesBody,
  EMPTY_FRAMES_MESSAGE,
  ENVELOPE_HEADER_SIZE,
  ENVELOPE_TRAILER_FLAG,
  FRAME_FIELD_OVERHEAD,
  GRPC_WEB_CONTENT_TYPE,
  KEEPALIVE_INTERVAL_MS,
  MAX_SEND_BODY_BYTES,
  MAX_SENDS_IN_FLIGHT,
  parseTrailer,
  RECEIVE_METHOD_PATH,
  SEND_METHOD_PATH,
  SEQUENCE_HEADER,
  SESSION_HEADER,
  writeEnvelopeHeader,
  writeFrameField,
} from "../../shared/tunnel/http-tunnel.ts";
import { createProxyAgent, proxyFor } from "../net/proxy.ts";
import { tlsOptions } from "../tls.ts";
import {
  createReconnector,
  type FrameSink,
  type SupervisedStreamOptions,
  type TransportState,
} from "./transport.ts";

/** How long Receive may take to answer before the attempt counts as failed. */
const RESPONSE_TIMEOUT_MS = 10_000;

export interface SupervisedHttpTunnelOptions
  extends SupervisedStreamOptions<FrameSink, Uint8Array> {
  /** The stream's base URL: `http(s)://authority/v1/networks/NETWORK/tunnel` (or `/uplink`). */
  readonly baseUrl: string;
}

export interface SupervisedHttpTunnel {
  readonly state: TransportState;
  readonly lastError: string | undefined;
  openSocket(): FrameSink | undefined;
  close(reason: string): Promise<void>;
}

export function superviseHttpTunnel(options: SupervisedHttpTunnelOptions): SupervisedHttpTunnel {
  const { log, stats, what } = options;
  const base = new URL(options.baseUrl.replace(/\/+$/, ""));
  const secure = base.protocol === "https:";
  const proxy = proxyFor(options.proxy, base);
  const request = secure ? https.request : http.request;
  const tlsSettings = secure ? tlsOptions(options.tls) : {};
  // Sends reuse one kept-alive connection; Receive holds its own.
  const sendAgent = proxy
    ? createProxyAgent(proxy, secure, true)
    : new (secure ? https.Agent : http.Agent)({ keepAlive: true, maxSockets: MAX_SENDS_IN_FLIGHT });
  const receiveAgent = proxy ? createProxyAgent(proxy, secure) : undefined;

  let state: TransportState = "connecting";
  let lastError: string | undefined;
  let current: Connection | undefined;
  const reconnector = createReconnector({
    what,
    log,
    intervalMs: options.retryIntervalMs,
    reconnect: () => {
      if (state === "retrying") connect();
    },
  });

  /** One Receive and the Sends that go with it. */
  class Connection implements FrameSink {
    readonly #abort = new AbortController();
    #session: string | undefined;
    #open = false;
    #ended = false;
    /** The body being built for the next Send: envelope header space, then Frames fields. */
    #pending = Buffer.allocUnsafe(64 * 1024);
    #pendingLength = ENVELOPE_HEADER_SIZE;
    /** Bodies sealed because the next frame would not have fitted the relay's Send limit. */
    readonly #sealed: Buffer[] = [];
    #sealedBytes = 0;
    /** Sends out now, at most MAX_SENDS_IN_FLIGHT; each numbered in SEQUENCE_HEADER. */
    #inFlight = 0;
    #sequence = 0;
    #lastSent = Date.now();
    #lastReceived = Date.now();
    #timer: ReturnType<typeof setInterval> | undefined;

    get isOpen(): boolean {
      return this.#open && !this.#ended;
    }

    /**
     * Bytes queued beyond the next Send: like a WebSocket's bufferedAmount, which leaves out
     * what the kernel's socket buffer holds. The body being built is what the next POST carries
     * as soon as a slot frees; counting it made the node drop datagrams (HIGH_WATER_BYTES) on
     * every round trip of a busy tunnel, where a WebSocket drops none.
     */
    get bufferedAmount(): number {
      return this.#sealedBytes;
    }

    start(): void {
      const req = request(`${base.href}${RECEIVE_METHOD_PATH}`, {
        method: "POST",
        headers: this.#headers(EMPTY_FRAMES_MESSAGE.length),
        signal: this.#abort.signal,
        ...(receiveAgent ? { agent: receiveAgent } : {}),
        ...tlsSettings,
      });
      const answered = setTimeout(
        () =>
          this.end(CloseCode.Abnormal, `no answer from ${base.host} in ${RESPONSE_TIMEOUT_MS} ms`),
        RESPONSE_TIMEOUT_MS,
      );
      req.on("response", (response) => {
        clearTimeout(answered);
        const refused = statusOf(response);
        if (refused) {
          response.resume();
          this.end(refused.code, refused.reason);
          return;
        }
        const id = response.headers[SESSION_HEADER];
        if (typeof id !== "string" || id === "") {
          response.resume();
          this.end(
            CloseCode.Abnormal,
            `HTTP ${response.statusCode} from ${base.host} without ${SESSION_HEADER}: is this a siderolink relay?`,
          );
          return;
        }
        this.#session = id;
        this.#read(response);
      });
      req.on("error", (error) => this.end(CloseCode.Abnormal, error.message));
      req.end(EMPTY_FRAMES_MESSAGE);
    }

    /** Queues one frame for the next Send (the bytes are copied). */
    send(frame: Uint8Array): void {
      if (!this.isOpen) return;
      const needed = FRAME_FIELD_OVERHEAD + frame.length;
      if (this.#pendingLength + needed > MAX_SEND_BODY_BYTES) {
        const body = this.#seal();
        this.#sealed.push(body);
        this.#sealedBytes += body.length;
      }
      if (this.#pendingLength + needed > this.#pending.length) {
        const grown = Buffer.allocUnsafe(
          Math.max(this.#pending.length * 2, this.#pendingLength + needed),
        );
        this.#pending.copy(grown, 0, 0, this.#pendingLength);
        this.#pending = grown;
      }
      this.#pendingLength = writeFrameField(this.#pending, this.#pendingLength, frame);
      this.#flush();
    }

    /** Ends this connection; the supervisor decides what comes next. */
    end(code: number, reason: string): void {
      if (this.#ended) return;
      this.#ended = true;
      clearInterval(this.#timer);
      this.#abort.abort();
      ended(this, code, reason);
    }

    #read(response: http.IncomingMessage): void {
      const frames: Uint8Array[] = [];
      const reader = createEnvelopeReader((flags, body) => {
        if (flags & ENVELOPE_TRAILER_FLAG) {
          const fields = parseTrailer(body);
          this.end(
            Number(fields.get(CLOSE_CODE_TRAILER) ?? CloseCode.Abnormal),
            fields.get("grpc-message") ?? "",
          );
          return;
        }
        const count = decodeFramesBody(body, frames);
        for (let i = 0; i < count && !this.#ended; i++) options.onBinary(this, frames[i]);
      }, MAX_FRAME_SIZE + 16);
      response.on("data", (chunk: Buffer) => {
        this.#lastReceived = Date.now();
        if (!this.#open) this.#opened();
        try {
          reader.push(chunk);
        } catch (error) {
          const message = (error as Error).message;
          log.warn("malformed message from the relay; reconnecting", { error: message });
          this.end(error instanceof FrameError ? error.closeCode : 1007, message);
        }
      });
      response.on("end", () => this.end(CloseCode.Abnormal, "the relay ended the stream"));
      response.on("error", (error) => this.end(CloseCode.Abnormal, error.message));
    }

    #opened(): void {
      this.#open = true;
      state = "connected";
      stats.connects++;
      log.info(`${what} connected`, options.connectedFields);
      options.onOpen?.(this);
      this.#timer = setInterval(() => {
        const now = Date.now();
        if (now - this.#lastReceived > LIVENESS_TIMEOUT_MS) {
          log.warn(`${what} silent too long; reconnecting`, { silentMs: now - this.#lastReceived });
          this.end(CloseCode.Abnormal, "silent too long");
          return;
        }
        if (now - this.#lastSent >= KEEPALIVE_INTERVAL_MS && this.#inFlight === 0) this.#post(true);
      }, KEEPALIVE_INTERVAL_MS / 3);
    }

    #flush(): void {
      if (this.#inFlight >= MAX_SENDS_IN_FLIGHT || this.#ended) return;
      if (this.#sealed.length === 0 && this.#pendingLength === ENVELOPE_HEADER_SIZE) return;
      this.#post(false);
    }

    /** The pending frames as a finished body; a new buffer takes the next ones. */
    #seal(): Buffer {
      writeEnvelopeHeader(this.#pending, 0, 0, this.#pendingLength - ENVELOPE_HEADER_SIZE);
      const body = this.#pending.subarray(0, this.#pendingLength);
      // The request owns these bytes until it is written.
      this.#pending = Buffer.allocUnsafe(this.#pending.length);
      this.#pendingLength = ENVELOPE_HEADER_SIZE;
      return body;
    }

    /** POSTs the oldest sealed body, else what is pending (or, for a ping, an empty Frames). */
    #post(ping: boolean): void {
      let body: Buffer;
      const sealed = this.#sealed.shift();
      if (sealed) {
        body = sealed;
        this.#sealedBytes -= sealed.length;
      } else if (ping && this.#pendingLength === ENVELOPE_HEADER_SIZE) {
        body = Buffer.from(EMPTY_FRAMES_MESSAGE);
      } else {
        body = this.#seal();
      }
      this.#inFlight++;
      this.#lastSent = Date.now();
      const req = request(`${base.href}${SEND_METHOD_PATH}`, {
        method: "POST",
        headers: {
          ...this.#headers(body.length),
          [SESSION_HEADER]: this.#session ?? "",
          [SEQUENCE_HEADER]: String(this.#sequence++),
        },
        agent: sendAgent,
        signal: this.#abort.signal,
        ...tlsSettings,
      });
      req.on("response", (response) => {
        response.resume();
        const refused = statusOf(response);
        response.on("end", () => {
          this.#inFlight--;
          if (refused && refused.code !== GrpcStatus.Ok) {
            this.end(refused.code, `Send refused: ${refused.reason}`);
            return;
          }
          this.#flush();
        });
      });
      req.on("error", (error) => this.end(CloseCode.Abnormal, `Send failed: ${error.message}`));
      req.end(body);
    }

    #headers(length: number): Record<string, string> {
      return {
        ...options.headers,
        "content-type": GRPC_WEB_CONTENT_TYPE,
        "content-length": String(length),
        "x-grpc-web": "1",
      };
    }
  }

  const ended = (connection: Connection, code: number, reason: string): void => {
    if (current !== connection) return;
    current = undefined;
    options.onClosed?.();
    if (state === "stopped") return;
    lastError = `closed with ${code}${reason ? ` "${reason}"` : ""}`;
    if (options.endsForGood(code)) {
      state = "stopped";
      options.onEnded(code, reason);
      return;
    }
    state = "retrying";
    reconnector.schedule(lastError);
  };

  const connect = (): void => {
    state = "connecting";
    options.onConnecting?.();
    const connection = new Connection();
    current = connection;
    connection.start();
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
      return current?.isOpen ? current : undefined;
    },
    async close() {
      state = "stopped";
      reconnector.cancel();
      const connection = current;
      current = undefined;
      connection?.end(1000, "closing");
      sendAgent.destroy();
      receiveAgent?.destroy();
    },
  };
}

/**
 * The status of a trailers-only answer (grpc-status in the headers), with the relay's close code
 * when it gave one, or of a non-200 answer; undefined for a stream that carries messages.
 */
function statusOf(response: http.IncomingMessage): { code: number; reason: string } | undefined {
  if (response.statusCode !== 200) {
    return {
      code: CloseCode.Abnormal,
      reason: `HTTP ${response.statusCode} ${response.statusMessage ?? ""}`.trim(),
    };
  }
  const status = response.headers["grpc-status"];
  if (typeof status !== "string") return undefined;
  const reason = decodeGrpcMessage(String(response.headers["grpc-message"] ?? ""));
  const closeCode = response.headers[CLOSE_CODE_TRAILER];
  if (typeof closeCode === "string") return { code: Number(closeCode), reason };
  if (Number(status) === GrpcStatus.Ok) return { code: GrpcStatus.Ok, reason };
  return { code: CloseCode.Abnormal, reason: `grpc-status ${status}: ${reason}` };
}
