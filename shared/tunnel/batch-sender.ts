/**
 * Sends datagrams as batch frames: each datagram goes into the batch being built, a full batch
 * is sent before the datagram that did not fit starts the next, and `flush` sends the rest.
 * Every sender of datagram batches (relay and sidecars) goes through this one loop.
 */
import type { BatchEncoder } from "./encode.ts";

export interface BatchSender {
  /**
   * Adds a datagram (with its 16-byte node tag when the encoder builds PEER_DATAGRAMS), first
   * sending the batch when the datagram would not fit.
   */
  add(datagram: Uint8Array, tag?: Uint8Array): void;
  /** Sends the batch built so far, if it holds any datagram. */
  flush(): void;
}

/**
 * A sender over `encoder` that hands each finished frame to `send`. The frame is a view into the
 * encoder's buffer, reused once `send` returns: a `send` that writes later must copy it. One
 * encoder may serve several senders as long as each flushes before another adds.
 */
export function createBatchSender(
  encoder: BatchEncoder,
  send: (frame: Uint8Array) => void,
): BatchSender {
  return {
    add(datagram, tag) {
      if (encoder.add(datagram, tag)) return;
      if (encoder.count > 0) send(encoder.finish());
      if (!encoder.add(datagram, tag)) {
        throw new RangeError(
          `datagram of ${datagram.length} bytes does not fit an empty batch: raise the encoder's frame limit`,
        );
      }
    },
    flush() {
      if (encoder.count > 0) send(encoder.finish());
    },
  };
}
