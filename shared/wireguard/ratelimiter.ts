/**
 * Per-source token bucket for handshake messages processed under load, so one address cannot
 * monopolise the (expensive) handshake path. Same parameters as wireguard-go: 20 per second,
 * bursts of 5.
 */
import type { Clock } from "./clock.ts";

const PacketsPerSecond = 20;
const PacketsBurstable = 5;
const PacketCost = 1000 / PacketsPerSecond;
const MaxTokens = PacketCost * PacketsBurstable;
/** Buckets idle this long are full again, so they are forgotten. */
const SweepInterval = 1000;

interface Bucket {
  tokens: number;
  last: number;
}

export class RateLimiter {
  private readonly clock: Clock;
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  constructor(clock: Clock) {
    this.clock = clock;
  }

  /** Whether a handshake from `source` (an address key) may be processed now. */
  allow(source: string): boolean {
    const now = this.clock.now();
    if (now - this.lastSweep > SweepInterval) this.sweep(now);
    const bucket = this.buckets.get(source);
    if (bucket === undefined) {
      this.buckets.set(source, { tokens: MaxTokens - PacketCost, last: now });
      return true;
    }
    bucket.tokens = Math.min(MaxTokens, bucket.tokens + (now - bucket.last));
    bucket.last = now;
    if (bucket.tokens < PacketCost) return false;
    bucket.tokens -= PacketCost;
    return true;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [source, bucket] of this.buckets) {
      if (now - bucket.last > SweepInterval) this.buckets.delete(source);
    }
  }
}
