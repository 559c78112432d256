/**
 * The rate limit of one node stream: a bucket of datagrams it may send at once (the burst) that
 * refills at a steady rate. One node cannot starve the uplink that all nodes of its network
 * share. Refilled once per message and taken from once per datagram, it allocates nothing.
 */
export class TokenBucket {
  readonly #burst: number;
  readonly #perSecond: number;
  #tokens: number;
  #refilledAt: number;

  /** A full bucket of `burst` tokens at time `now` (ms), regaining `perSecond` tokens a second. */
  constructor(burst: number, perSecond: number, now: number) {
    this.#burst = burst;
    this.#perSecond = perSecond;
    this.#tokens = burst;
    this.#refilledAt = now;
  }

  /** Adds what the time since the last refill earned, up to the burst (none if time went back). */
  refill(now: number): void {
    const elapsed = now - this.#refilledAt;
    if (elapsed <= 0) return;
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#perSecond) / 1000);
    this.#refilledAt = now;
  }

  /** Takes one token; false, taking nothing, when less than one is left. */
  take(): boolean {
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}
