/**
 * HubSocket over the response body of an HTTP-only tunnel's Receive call
 * (shared/tunnel/http-tunnel.ts): every frame the hub sends becomes one gRPC-web message of a
 * ReadableStream that the runtime writes out as the response (Node's HTTP server, or a Durable
 * Object's fetch on Workers), and a close becomes the trailer block.
 *
 * The stream's queue is measured in bytes and reported as bufferedAmount, so the hub's congestion
 * logic (its short drop-oldest backlog above the high-water mark, counted as queue_full) bounds it
 * exactly as it bounds a WebSocket's send buffer. Runtimes read the stream only as fast as the
 * client takes it, so a slow client shows up here.
 *
 * Unlike a hibernatable WebSocket, such a stream lives only while the runtime runs: on Workers the
 * Durable Object stays in memory for as long as a Receive is open.
 */

import { grpcStatusOfClose } from "../../shared/tunnel/grpc-status.ts";
import {
  EMPTY_FRAMES_MESSAGE,
  encodeFramesMessage,
  encodeTrailer,
  KEEPALIVE_INTERVAL_MS,
} from "../../shared/tunnel/http-tunnel.ts";
import type { HubSocket } from "./socket.ts";
import { webSocketDatagrams } from "./websocket-batches.ts";

/** Bytes the stream holds before the runtime pulls them; a quarter of the hub's high-water mark. */
const STREAM_HIGH_WATER_BYTES = 256 * 1024;

export interface HttpDownlink extends HubSocket {
  /** The response body. */
  readonly body: ReadableStream<Uint8Array>;
}

export interface HttpDownlinkOptions {
  /** The client went away (the runtime cancelled the body) or the stream was closed. */
  onGone(): void;
  readonly keepaliveIntervalMs?: number;
}

export function createHttpDownlink(options: HttpDownlinkOptions): HttpDownlink {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let ended = false;
  let keepalive: ReturnType<typeof setInterval> | undefined;

  const end = (): void => {
    if (ended) return;
    ended = true;
    if (keepalive !== undefined) clearInterval(keepalive);
    options.onGone();
  };
  const enqueue = (message: Uint8Array): void => {
    if (ended) return;
    try {
      controller.enqueue(message);
    } catch {
      end();
    }
  };

  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      cancel() {
        end();
      },
    },
    { highWaterMark: STREAM_HIGH_WATER_BYTES, size: (chunk) => chunk.byteLength },
  );
  // The first message makes proxies pass the headers on, and tells the client the stream is up.
  enqueue(EMPTY_FRAMES_MESSAGE);
  keepalive = setInterval(
    () => enqueue(EMPTY_FRAMES_MESSAGE),
    options.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS,
  );

  const one: Uint8Array[] = [];
  // The stream holds each message until the client reads it: the frame is copied into it.
  const sendDatagrams = webSocketDatagrams((frame) => {
    one[0] = frame;
    enqueue(encodeFramesMessage(one));
  });

  return {
    body,
    sendDatagrams(datagrams, tags, count) {
      if (!ended) sendDatagrams(datagrams, tags, count);
    },
    sendControl(message) {
      // The answer to a ping (an empty Send) is a keepalive; control frames travel as frames.
      if (typeof message === "string") enqueue(EMPTY_FRAMES_MESSAGE);
      else enqueue(encodeFramesMessage([message]));
    },
    close(code, reason) {
      if (ended) return;
      enqueue(encodeTrailer(grpcStatusOfClose(code), reason, code));
      try {
        controller.close();
      } catch {
        // Cancelled by the runtime already.
      }
      end();
    },
    get writable() {
      return !ended;
    },
    get bufferedAmount() {
      if (ended) return 0;
      return STREAM_HIGH_WATER_BYTES - (controller.desiredSize ?? STREAM_HIGH_WATER_BYTES);
    },
    persist() {},
  };
}
