/**
 * Waiting for the uplink's ACKs: each PEER_* message the hub sends carries a sequence number,
 * and whoever needs the peer applied (Provision) waits for its ACK, for a bounded time.
 */
import type { Clock, TimerHandle } from "../../shared/wireguard/clock.ts";
import type { AckResult } from "./hub.ts";

interface Waiter {
  resolve(result: AckResult): void;
  timer: TimerHandle;
}

export class AckWaiters {
  readonly #waiters = new Map<number, Waiter>();
  readonly #clock: Clock;
  readonly #onTimeout: () => void;

  constructor(clock: Clock, onTimeout: () => void) {
    this.#clock = clock;
    this.#onTimeout = onTimeout;
  }

  /** Resolves with "acked" when `ack(seq)` comes, else "timeout" after `timeoutMs`. */
  wait(seq: number, timeoutMs: number): Promise<AckResult> {
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        this.#waiters.delete(seq);
        this.#onTimeout();
        resolve("timeout");
      }, timeoutMs);
      this.#waiters.set(seq, { resolve, timer });
    });
  }

  /** Settles the wait for `seq`; false when nobody waits for it (late or unknown). */
  ack(seq: number): boolean {
    return this.#settle(seq, "acked");
  }

  /** Ends every wait: the uplink that would have answered is gone. */
  abandonAll(): void {
    for (const seq of [...this.#waiters.keys()]) this.#settle(seq, "uplink_gone");
  }

  #settle(seq: number, result: AckResult): boolean {
    const waiter = this.#waiters.get(seq);
    if (!waiter) return false;
    this.#waiters.delete(seq);
    this.#clock.clearTimeout(waiter.timer);
    waiter.resolve(result);
    return true;
  }
}
