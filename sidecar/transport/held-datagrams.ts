/**
 * Outgoing datagrams held for a stream that is opening or waiting to reconnect: the newest
 * SEND_QUEUE_LIMIT, copied (the device reuses its buffers), oldest dropped first and counted as
 * congestion, all sent in order once the stream is open.
 */
import { SEND_QUEUE_LIMIT, type TransportStats } from "./transport.ts";

export class HeldDatagrams {
  readonly #held: Uint8Array[] = [];
  readonly #stats: TransportStats;

  constructor(stats: TransportStats) {
    this.#stats = stats;
  }

  hold(datagrams: readonly Uint8Array[]): void {
    for (const datagram of datagrams) {
      if (this.#held.length >= SEND_QUEUE_LIMIT) {
        this.#held.shift();
        this.#stats.dropsCongested++;
      }
      this.#held.push(datagram.slice());
    }
  }

  /** Hands every held datagram to `send` in one batch, then forgets them. */
  release(send: (datagrams: readonly Uint8Array[]) => void): void {
    if (this.#held.length === 0) return;
    send(this.#held);
    this.#held.length = 0;
  }

  /** The stream ended for good: what was held will never go, and is counted so. */
  discard(): void {
    this.#stats.dropsNotConnected += this.#held.length;
    this.#held.length = 0;
  }
}
