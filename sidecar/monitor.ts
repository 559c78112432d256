/**
 * Link monitoring as Talos does it: every 30 s look at the last handshake with the server; once
 * it is 275 s old (RejectAfterTime 180 s + RekeyTimeout 5 s + RekeyAttemptTime 90 s: WireGuard
 * has given up by then), move to the next server endpoint, and provision again when none is
 * left. A newly chosen endpoint gets the whole 275 s before it is judged.
 */

export const CHECK_INTERVAL_MS = 30_000;
export const HANDSHAKE_TIMEOUT_MS = 275_000;

export type LinkAction =
  | { readonly kind: "ok" }
  | { readonly kind: "next-endpoint"; readonly endpoint: string }
  | { readonly kind: "reprovision" };

/** The endpoints from one Provision answer and which of them is in use since when. */
export class EndpointCycle {
  readonly endpoints: readonly string[];
  #index = 0;
  #since: number;
  readonly #timeoutMs: number;

  constructor(endpoints: readonly string[], now: number, timeoutMs = HANDSHAKE_TIMEOUT_MS) {
    if (endpoints.length === 0) throw new RangeError("EndpointCycle needs at least one endpoint");
    this.endpoints = endpoints;
    this.#since = now;
    this.#timeoutMs = timeoutMs;
  }

  get current(): string {
    return this.endpoints[this.#index];
  }

  /**
   * Judges the link at `now` given the wall-clock ms of the last handshake (0: none yet). On
   * "next-endpoint" the cycle has already moved and restarted its grace period.
   */
  check(now: number, lastHandshake: number): LinkAction {
    const reference = Math.max(lastHandshake, this.#since);
    if (now - reference < this.#timeoutMs) return { kind: "ok" };
    if (this.#index + 1 >= this.endpoints.length) return { kind: "reprovision" };
    this.#index++;
    this.#since = now;
    return { kind: "next-endpoint", endpoint: this.current };
  }
}

/** Handshake age in seconds at `now`, or null before the first handshake. */
export function handshakeAgeSeconds(now: number, lastHandshake: number): number | null {
  return lastHandshake === 0 ? null : Math.max(0, Math.floor((now - lastHandshake) / 1000));
}

/** Whether a link whose last handshake is `lastHandshake` counts as up at `now`. */
export function handshakeFresh(
  now: number,
  lastHandshake: number,
  timeoutMs = HANDSHAKE_TIMEOUT_MS,
): boolean {
  return lastHandshake !== 0 && now - lastHandshake < timeoutMs;
}
