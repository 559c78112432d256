/**
 * Networks of a Node relay: one SQLite database holds them all, and each network's runtime (its
 * hub) lives in this process from first use until shutdown. Timers here sweep dead streams and
 * write traffic counters to the store.
 */
import { validateNetworkName } from "../../shared/siderolink/relay-api.ts";
import { LIVENESS_TIMEOUT_MS } from "../../shared/tunnel/frame.ts";
import type { RelayLog } from "../app/log.ts";
import type { NetworkRuntime, RelayDirectory } from "../app/runtime.ts";
import { createNetworkRuntime } from "../app/runtime.ts";
import type { HubLimits } from "../hub/hub.ts";
import { sweepIntervalMs } from "../hub/registry.ts";
import { listNetworkNames } from "../store/schema.ts";
import type { SqlExecutor } from "../store/sql.ts";
import { createSqlNetworkStore } from "../store/sql-store.ts";
import type { WebSocketUpgrades } from "./websocket.ts";

/** How often traffic counters reach the store. */
export const TRAFFIC_FLUSH_INTERVAL_MS = 30_000;

export interface NodeDirectory extends RelayDirectory {
  /** The runtime of the network whose peer has this virtual address, if any. */
  locatePeer(virtualAddress: string): Promise<NetworkRuntime | undefined>;
  /** Lets WebSocket upgrades through (set once the server exists). */
  setUpgrades(upgrades: WebSocketUpgrades): void;
  /** Writes pending traffic counters to the store. */
  flushTraffic(): Promise<void>;
  /** Stops the timers, closes every stream and writes counters. */
  close(code: number, reason: string): Promise<void>;
}

export interface NodeDirectoryOptions {
  readonly hubLimits?: Partial<HubLimits>;
  /** Overrides the sweep interval that follows from the liveness timeout (sweepIntervalMs). */
  readonly sweepIntervalMs?: number;
  readonly log?: RelayLog;
}

export function createNodeDirectory(
  sql: SqlExecutor,
  options: NodeDirectoryOptions = {},
): NodeDirectory {
  const runtimes = new Map<string, NetworkRuntime>();
  let upgrades: WebSocketUpgrades | undefined;

  const build = (name: string): NetworkRuntime => {
    const runtime: NetworkRuntime = createNetworkRuntime({
      store: createSqlNetworkStore(sql, name),
      hubLimits: options.hubLimits,
      log: options.log,
      acceptWebSocket: (request, admission) => {
        if (!upgrades) throw new Error("WebSocket upgrades are not wired to this directory");
        return upgrades.accept(runtime, request, admission);
      },
    });
    return runtime;
  };

  const flushTraffic = async (): Promise<void> => {
    for (const runtime of runtimes.values()) {
      for (const traffic of runtime.hub.drainTraffic())
        await runtime.store.recordTraffic(traffic.virtualAddress, traffic);
    }
  };

  const sweepEveryMs =
    options.sweepIntervalMs ??
    sweepIntervalMs(options.hubLimits?.livenessTimeoutMs ?? LIVENESS_TIMEOUT_MS);
  const sweep = setInterval(() => {
    for (const runtime of runtimes.values()) runtime.hub.sweep();
  }, sweepEveryMs);
  const flush = setInterval(() => {
    flushTraffic().catch((error: unknown) =>
      console.error("relay: writing traffic counters failed", error),
    );
  }, TRAFFIC_FLUSH_INTERVAL_MS);
  sweep.unref();
  flush.unref();

  const directory: NodeDirectory = {
    async runtime(name) {
      validateNetworkName(name);
      const live = runtimes.get(name);
      if (live) return live;
      const runtime = build(name);
      // Only networks that exist stay live; a name from a stray request leaves nothing behind.
      // A network created through this runtime joins on its next lookup.
      const exists = (await runtime.store.network()) !== undefined;
      const raced = runtimes.get(name);
      if (raced) return raced;
      if (exists) runtimes.set(name, runtime);
      return runtime;
    },
    async list() {
      return listNetworkNames(sql);
    },
    async created(name) {
      // The networks table is the list; the new network's runtime goes live now.
      await directory.runtime(name);
    },
    live() {
      return runtimes.values();
    },
    async locatePeer(virtualAddress) {
      const [row] = sql.all<{ network: string }>(
        "SELECT network FROM peers WHERE virtual_address = ? LIMIT 1",
        virtualAddress,
      );
      return row ? directory.runtime(row.network) : undefined;
    },
    setUpgrades(value) {
      upgrades = value;
    },
    flushTraffic,
    async close(code, reason) {
      clearInterval(sweep);
      clearInterval(flush);
      for (const runtime of runtimes.values()) runtime.hub.closeAll(code, reason);
      await flushTraffic();
    },
  };
  return directory;
}
