/**
 * `--transport auto`: the best transport that works. It starts on the preferred one (WebSocket for
 * https relays, gRPC for grpc:// ones); when that fails to connect, or stays down, it falls back to
 * the HTTP-only tunnel, which passes proxies that drop `Upgrade` or speak only HTTP/1.1. While on
 * the fallback it probes the preferred transport every PROBE_INTERVAL_MS (doubling after each
 * failed probe, up to MAX_PROBE_INTERVAL_MS) and moves back once a probe gets through.
 *
 * A probe proves the path without touching the node's stream: it opens the preferred stream with
 * no peer address, which the relay accepts at the transport level (the upgrade completes, or an
 * HTTP/2 gRPC status comes back) and then refuses. A real second stream would replace the live
 * one at the relay ("peer replaced").
 *
 * `reason` says which transport is in use and why, for `status --json` and the log.
 *
 * The choosing is the same for the node's tunnel and the server's uplink (uplink/auto-uplink.ts):
 * createTransportSwitch holds either kind of transport; createAutoTransport is the node's.
 */
import type { Logger } from "../log.ts";
import {
  createTransportStats,
  type NodeTransport,
  type TransportKind,
  type TransportState,
  type TransportStats,
} from "./transport.ts";

/** How long the preferred transport may stay unconnected before the fallback takes over. */
export const FALLBACK_AFTER_MS = 15_000;
export const PROBE_INTERVAL_MS = 60_000;
export const MAX_PROBE_INTERVAL_MS = 15 * 60_000;
/** How often the state of the transport in use is looked at. */
const WATCH_INTERVAL_MS = 1_000;

/** A transport auto may start on: anything but the fallback. */
export type PreferredKind = Exclude<TransportKind, "http">;

/** What the switch reads of the transport it holds, a node's tunnel or the server's uplink. */
export interface SwitchableTransport {
  readonly kind: TransportKind;
  readonly state: TransportState;
  readonly stats: Readonly<TransportStats>;
  readonly lastError: string | undefined;
  close(): Promise<void>;
}

export interface TransportSwitchOptions<T extends SwitchableTransport, P extends PreferredKind> {
  readonly preferred: P;
  /**
   * Opens a transport of this kind. `isCurrent` turns false once it is replaced: a replaced
   * transport's terminal close (or fatal refusal) must then be ignored.
   */
  create(kind: P | "http", isCurrent: () => boolean): T;
  /** Whether the preferred transport gets through now (see above). */
  probe(kind: P): Promise<boolean>;
  readonly log: Logger;
  readonly fallbackAfterMs?: number;
  readonly probeIntervalMs?: number;
}

/** The transport in use, replaced as described above. */
export interface TransportSwitch<T> {
  readonly current: T;
  /** Which transport is in use and why. */
  readonly reason: string;
  /**
   * The counters of every transport this switch has held, the one in use included: a switch
   * does not reset what status reports (a relay outage that sends the link to the fallback and
   * back still counts each reconnection).
   */
  readonly stats: Readonly<TransportStats>;
  /** Stops switching and closes the transport in use. */
  close(): Promise<void>;
}

export type AutoTransportOptions = TransportSwitchOptions<NodeTransport, PreferredKind>;

export interface AutoTransport extends NodeTransport {
  /** Which transport is in use and why. */
  readonly reason: string;
}

/**
 * A transport that is whichever one the switch holds: what the node's auto tunnel and the
 * server's auto uplink have in common; each adds how it sends.
 */
export class SwitchedTransport<T extends SwitchableTransport> {
  readonly #chosen: TransportSwitch<T>;

  constructor(chosen: TransportSwitch<T>) {
    this.#chosen = chosen;
  }

  /** The transport in use now. */
  get current(): T {
    return this.#chosen.current;
  }

  get kind(): T["kind"] {
    return this.#chosen.current.kind;
  }

  get state(): TransportState {
    return this.#chosen.current.state;
  }

  get stats(): Readonly<TransportStats> {
    return this.#chosen.stats;
  }

  get lastError(): string | undefined {
    return this.#chosen.current.lastError;
  }

  /** Which transport is in use and why. */
  get reason(): string {
    return this.#chosen.reason;
  }

  close(): Promise<void> {
    return this.#chosen.close();
  }
}

class AutoNodeTransport extends SwitchedTransport<NodeTransport> implements AutoTransport {
  send(datagrams: readonly Uint8Array[]): void {
    this.current.send(datagrams);
  }
}

/** The node's `--transport auto`: a NodeTransport that is whichever transport the switch holds. */
export function createAutoTransport(options: AutoTransportOptions): AutoTransport {
  return new AutoNodeTransport(createTransportSwitch(options));
}

export function createTransportSwitch<T extends SwitchableTransport, P extends PreferredKind>(
  options: TransportSwitchOptions<T, P>,
): TransportSwitch<T> {
  const { log, preferred } = options;
  const fallbackAfterMs = options.fallbackAfterMs ?? FALLBACK_AFTER_MS;
  const baseProbeMs = options.probeIntervalMs ?? PROBE_INTERVAL_MS;
  let current: T;
  let reason = `${preferred}: preferred for this relay URL`;
  let since = Date.now();
  let probeMs = baseProbeMs;
  let nextProbe = 0;
  let probing = false;
  let closed = false;
  const retired = createTransportStats();

  const open = (kind: P | "http"): T => {
    let transport: T | undefined;
    transport = options.create(kind, () => transport === current);
    return transport;
  };
  current = open(preferred);
  log.info("transport chosen", { transport: preferred, reason });

  const switchTo = (kind: P | "http", why: string): void => {
    const previous = current;
    // Closed first: what it held for a stream that never opened is counted as dropped before
    // its counters are carried over.
    void previous.close();
    for (const key of Object.keys(retired) as (keyof TransportStats)[]) {
      retired[key] += previous.stats[key];
    }
    current = open(kind);
    reason = why;
    since = Date.now();
    log.warn("transport changed", { from: previous.kind, to: kind, reason: why });
  };

  const watch = setInterval(() => {
    if (closed) return;
    const now = Date.now();
    if (current.kind === preferred) {
      if (current.state === "connected") {
        since = now;
        return;
      }
      // Failing at once is a path that blocks it; a stream that worked gets fallbackAfterMs to
      // come back (a relay restarting) before the fallback takes over.
      const failedFirst = current.stats.connects === 0 && current.state === "retrying";
      if (current.state !== "stopped" && (failedFirst || now - since > fallbackAfterMs)) {
        const error = current.lastError ?? `not connected in ${Math.round((now - since) / 1000)} s`;
        switchTo(
          "http",
          `http: ${preferred} failed (${error}); probing ${preferred} every ${interval(probeMs)}`,
        );
        nextProbe = now + probeMs;
      }
      return;
    }
    if (probing || now < nextProbe) return;
    probing = true;
    options.probe(preferred).then(
      (works) => {
        probing = false;
        if (closed || current.kind === preferred) return;
        if (works) {
          probeMs = baseProbeMs;
          switchTo(preferred, `${preferred}: gets through again (probe succeeded)`);
          return;
        }
        probeMs = Math.min(probeMs * 2, MAX_PROBE_INTERVAL_MS);
        nextProbe = Date.now() + probeMs;
        reason = `http: ${preferred} still fails; next probe in ${interval(probeMs)}`;
      },
      () => {
        probing = false;
      },
    );
  }, WATCH_INTERVAL_MS);
  watch.unref();

  return {
    get current() {
      return current;
    },
    get reason() {
      return reason;
    },
    get stats() {
      const total = { ...retired };
      for (const key of Object.keys(total) as (keyof TransportStats)[]) {
        total[key] += current.stats[key];
      }
      return total;
    },
    async close() {
      closed = true;
      clearInterval(watch);
      await current.close();
    },
  };
}

function interval(ms: number): string {
  return ms < 1_000 ? `${ms} ms` : `${Math.round(ms / 1_000)} s`;
}
