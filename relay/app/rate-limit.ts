/**
 * Token buckets by key (a client address, a network name): each key may spend `burst` requests
 * at once and regains `perSecond` of them a second. The table is bounded: when it is full, keys
 * whose buckets have refilled are forgotten first (they hold no information), then the oldest,
 * so a client spraying source addresses costs memory only up to `maxKeys`.
 */

export interface RateLimit {
  /** Requests a key may make at once. */
  readonly burst: number;
  /** Requests a key regains per second. */
  readonly perSecond: number;
}

export interface RateLimiter {
  /**
   * Spends one request of `key` at `now` (ms). Returns 0 when allowed, otherwise the
   * milliseconds until the key may try again (nothing is spent then).
   */
  take(key: string, now: number): number;
}

interface Bucket {
  tokens: number;
  updated: number;
}

export const DEFAULT_RATE_LIMITER_KEYS = 16_384;

export function createRateLimiter(
  limit: RateLimit,
  maxKeys = DEFAULT_RATE_LIMITER_KEYS,
): RateLimiter {
  if (!(limit.burst >= 1) || !(limit.perSecond > 0)) {
    throw new RangeError(
      `rate limit needs burst >= 1 and perSecond > 0, got burst ${limit.burst}, perSecond ${limit.perSecond}`,
    );
  }
  // Map iteration order is insertion order: re-inserting on use keeps the oldest first.
  const buckets = new Map<string, Bucket>();
  const fullAfterMs = (limit.burst / limit.perSecond) * 1000;

  const evict = (now: number): void => {
    for (const [key, bucket] of buckets) {
      if (now - bucket.updated >= fullAfterMs) buckets.delete(key);
    }
    for (const key of buckets.keys()) {
      if (buckets.size < maxKeys) break;
      buckets.delete(key);
    }
  };

  return {
    take(key, now) {
      let bucket = buckets.get(key);
      if (bucket) {
        buckets.delete(key);
        const elapsed = Math.max(0, now - bucket.updated);
        bucket.tokens = Math.min(limit.burst, bucket.tokens + (elapsed * limit.perSecond) / 1000);
        bucket.updated = now;
      } else {
        if (buckets.size >= maxKeys) evict(now);
        bucket = { tokens: limit.burst, updated: now };
      }
      buckets.set(key, bucket);
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return 0;
      }
      return Math.ceil(((1 - bucket.tokens) * 1000) / limit.perSecond);
    },
  };
}
