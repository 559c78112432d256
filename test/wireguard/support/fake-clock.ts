import type { Clock, TimerHandle } from "../../../shared/wireguard/clock.ts";

interface Scheduled {
  at: number;
  seq: number;
  callback: () => void;
}

/**
 * A clock that moves only when told. `advance(ms)` runs every callback due within the span in
 * time order, with `now()` reading each callback's due time, then lands at the end.
 */
export class FakeClock implements Clock {
  #current = 1_000_000;
  readonly #wallOffset: number;
  readonly #timers = new Set<Scheduled>();
  #seq = 0;
  /** Called after each fired callback, e.g. to deliver what it sent. */
  afterEach: () => void = () => {};

  constructor(wallStart = Date.UTC(2026, 0, 1)) {
    this.#wallOffset = wallStart - this.#current;
  }

  now(): number {
    return this.#current;
  }

  wallNow(): number {
    return this.#current + this.#wallOffset;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer = { at: this.#current + Math.max(0, delayMs), seq: this.#seq++, callback };
    this.#timers.add(timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle as Scheduled);
  }

  /** Number of callbacks still scheduled. */
  get pending(): number {
    return this.#timers.size;
  }

  advance(ms: number): void {
    const end = this.#current + ms;
    for (;;) {
      let next: Scheduled | null = null;
      for (const timer of this.#timers) {
        if (
          timer.at <= end &&
          (next === null || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))
        ) {
          next = timer;
        }
      }
      if (next === null) break;
      this.#timers.delete(next);
      this.#current = Math.max(this.#current, next.at);
      next.callback();
      this.afterEach();
    }
    this.#current = end;
  }
}
