/**
 * Time as the WireGuard core sees it, injected so tests can drive every timer with a fake
 * clock. `now` is monotonic and drives timers and key ages; `wallNow` is calendar time and
 * only feeds TAI64N timestamps and the last-handshake time reported to `wg`.
 */
export interface Clock {
  /** Monotonic milliseconds (any origin; may be fractional). */
  now(): number;
  /** Milliseconds since the Unix epoch (may be fractional). */
  wallNow(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Opaque handle of a scheduled callback. */
export type TimerHandle = unknown;
