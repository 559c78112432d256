import type { Clock } from "../../shared/wireguard/clock.ts";

/** The hub's clock where no test injects one: the platform's timers, portable to Workers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
