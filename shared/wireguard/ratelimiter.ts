/**
 * Per-source token bucket for handshake messages processed under load, so one address cannot
 * monopolise the (expensive) handshake path. Same parameters as wireguard-go: 20 per second,
 * bursts of 5.
 */
import type { Clock } from "./clock.ts";

const PACKETS_PER_SECOND = 20;
const PACKETS_BURSTABLE = 5;
const PACKET_COST = 1000 / PACKETS_PER_SECOND;
const MAX_TOKENS = PACKET_COST * PACKETS_BURSTABLE;
/** Buckets idle this long are full again, so they are forgotten. */
const SWEEP_INTERVAL = 1000;

interface Bucket {
  tokens: number;
  last: number;
}

export class RateLimiter {
  readonly #clock: Clock;
  readonly #buckets = new Map<string, Bucket>();
  #lastSweep = 0;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Whether a handshake from `source` (an address key) may be processed now. */
  allow(source: string): boolean {
    const now = this.#clock.now();
    if (now - this.#lastSweep > SWEEP_INTERVAL) this.#sweep(now);
    const bucket = this.#buckets.get(source);
    if (bucket === undefined) {
      this.#buckets.set(source, { tokens: MAX_TOKENS - PACKET_COST, last: now });
      return true;
    }
    bucket.tokens = Math.min(MAX_TOKENS, bucket.tokens + (now - bucket.last));
    bucket.last = now;
    if (bucket.tokens < PACKET_COST) return false;
    bucket.tokens -= PACKET_COST;
    return true;
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    for (const [source, bucket] of this.#buckets) {
      if (now - bucket.last > SWEEP_INTERVAL) this.#buckets.delete(source);
    }
  }
}
