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
 */
import type { Logger } from "../log.ts";
import type { NodeTransport, TransportKind } from "./transport.ts";

/** How long the preferred transport may stay unconnected before the fallback takes over. */
export const FALLBACK_AFTER_MS = 15_000;
export const PROBE_INTERVAL_MS = 60_000;
export const MAX_PROBE_INTERVAL_MS = 15 * 60_000;
/** How often the state of the transport in use is looked at. */
const WATCH_INTERVAL_MS = 1_000;

export interface AutoTransportOptions {
  readonly preferred: Exclude<TransportKind, "http">;
  /** Opens a transport of this kind; `onTerminal` of a transport no longer in use is ignored. */
  create(kind: TransportKind, isCurrent: () => boolean): NodeTransport;
  /** Whether the preferred transport gets through now (see above). */
  probe(kind: Exclude<TransportKind, "http">): Promise<boolean>;
  readonly log: Logger;
  readonly fallbackAfterMs?: number;
  readonly probeIntervalMs?: number;
}

export interface AutoTransport extends NodeTransport {
  /** Which transport is in use and why. */
  readonly reason: string;
}

export function createAutoTransport(options: AutoTransportOptions): AutoTransport {
  const { log, preferred } = options;
  const fallbackAfterMs = options.fallbackAfterMs ?? FALLBACK_AFTER_MS;
  const baseProbeMs = options.probeIntervalMs ?? PROBE_INTERVAL_MS;
  let current: NodeTransport;
  let reason = `${preferred}: preferred for this relay URL`;
  let since = Date.now();
  let probeMs = baseProbeMs;
  let nextProbe = 0;
  let probing = false;
  let closed = false;

  const open = (kind: TransportKind): NodeTransport => {
    let transport: NodeTransport | undefined;
    transport = options.create(kind, () => transport === current);
    return transport;
  };
  current = open(preferred);
  log.info("transport chosen", { transport: preferred, reason });

  const switchTo = (kind: TransportKind, why: string): void => {
    const previous = current;
    current = open(kind);
    reason = why;
    since = Date.now();
    log.warn("transport changed", { from: previous.kind, to: kind, reason: why });
    void previous.close();
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
    get kind() {
      return current.kind;
    },
    get state() {
      return current.state;
    },
    get stats() {
      return current.stats;
    },
    get lastError() {
      return current.lastError;
    },
    get reason() {
      return reason;
    },
    send(datagrams) {
      current.send(datagrams);
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
