/**
 * A network object's counters in its own SQLite storage, so `*_total` on /metrics keeps
 * counting across evictions and restarts: read back when the object is built, written a few
 * seconds after traffic (by the alarm), on every request and closed stream.
 *
 * One row holds them all as JSON: SQLite rows written are billed per row, and one row per flush
 * keeps that to one row every COUNTER_FLUSH_DELAY_MS of traffic.
 *
 *   relay_counters (id = 1, counters = {"hub": HubMetrics, "provisions": {code: count}})
 *
 * The table is created at the first flush, which happens only for an object whose network
 * exists: an object woken by a guessed name keeps no storage.
 */
import type { ProvisionCounts } from "../app/provision.ts";
import type { HubMetrics } from "../hub/metrics.ts";
import type { SqlExecutor } from "../store/sql.ts";

/** How long after traffic the counters are written: at most this much is lost to a crash. */
export const COUNTER_FLUSH_DELAY_MS = 5_000;

interface StoredCounters {
  readonly hub?: Partial<HubMetrics>;
  readonly provisions?: ProvisionCounts;
}

/** Adds the stored counters to `metrics` and `provisions` (both fresh: zero). */
export function loadCounters(
  sql: SqlExecutor,
  metrics: HubMetrics,
  provisions: ProvisionCounts,
): void {
  const exists = sql.all<{ name: string }>(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'relay_counters'",
  );
  if (exists.length === 0) return;
  const row = sql.all<{ counters: string }>("SELECT counters FROM relay_counters WHERE id = 1")[0];
  if (row === undefined) return;
  const stored = JSON.parse(row.counters) as StoredCounters;
  const hub = stored.hub ?? {};
  for (const key of Object.keys(metrics) as (keyof HubMetrics)[]) {
    if (key === "drops") {
      for (const reason of Object.keys(metrics.drops) as (keyof HubMetrics["drops"])[]) {
        metrics.drops[reason] += hub.drops?.[reason] ?? 0;
      }
    } else {
      metrics[key] += Number(hub[key] ?? 0);
    }
  }
  for (const [code, count] of Object.entries(stored.provisions ?? {})) {
    provisions[code] = (provisions[code] ?? 0) + count;
  }
}

export function saveCounters(
  sql: SqlExecutor,
  metrics: HubMetrics,
  provisions: ProvisionCounts,
): void {
  sql.all(
    "CREATE TABLE IF NOT EXISTS relay_counters (id INTEGER PRIMARY KEY CHECK (id = 1), counters TEXT NOT NULL)",
  );
  const counters: StoredCounters = { hub: metrics, provisions };
  sql.all(
    "INSERT INTO relay_counters (id, counters) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET counters = excluded.counters",
    JSON.stringify(counters),
  );
}
