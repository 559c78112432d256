import type { Clock } from "../../shared/wireguard/clock.ts";

/** The WireGuard core's clock on Node: performance.now() for timers, Date.now() for walls. */
export const nodeClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
