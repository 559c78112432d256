import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertV4MiniflareOptions, Log, LogLevel, Miniflare } from "miniflare";
import { bundlePath, bundleWorker, repositoryRoot } from "./bundle.ts";

/** Mirrors wrangler.toml: its name, date, bindings and SQLite-backed classes. */
const workerName = "siderolink-relay";

/** wrangler.toml's compatibility date and flags, so tests run on what a deploy gets. */
export async function wranglerCompatibility(): Promise<{ date: string; flags: string[] }> {
  const toml = await readFile(`${repositoryRoot}wrangler.toml`, "utf8");
  const date = /^compatibility_date\s*=\s*"([0-9-]+)"/m.exec(toml);
  if (!date) throw new Error("wrangler.toml has no compatibility_date line");
  const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml);
  return {
    date: date[1],
    flags: flags ? [...flags[1].matchAll(/"([^"]+)"/g)].map((match) => match[1]) : [],
  };
}

export interface WorkerRelayOptions {
  /** Keeps Durable Object storage here; a relay started on the same directory sees it. */
  persistDirectory?: string;
  /** The relay-wide operator token (a `wrangler secret` in production); null sets none. */
  operatorToken?: string | null;
  /** RELAY_LIVENESS_TIMEOUT_MS; the relay's default when absent. */
  livenessTimeoutMs?: number;
  /** More Worker vars, as `[vars]` in wrangler.toml sets them. */
  vars?: Record<string, string>;
}

/**
 * The relay Worker running in real workerd on a loopback port, reachable by any HTTP or
 * WebSocket client in this process.
 */
export interface WorkerRelay {
  /** http://127.0.0.1:PORT/ */
  readonly url: URL;
  readonly operatorToken: string;
  readonly persistDirectory: string;
  /** Every line the Worker and its objects logged (console.*), in order. */
  readonly logs: string[];
  /**
   * Evicts one network's Durable Object the way the platform does when it idles: hibernated
   * WebSockets stay open, in-memory state is gone, and the next event constructs the object anew.
   */
  evictNetwork(network: string): Promise<void>;
  /** Evicts one mesh cluster's Durable Object the same way. */
  evictMesh(clusterId: string): Promise<void>;
  /** The tables in a network object's SQLite storage (runtime-internal `_cf_` ones left out). */
  networkTables(network: string): Promise<string[]>;
  /**
   * How many network objects ever ran on this relay's storage: workerd gives each object that
   * is constructed a database file of its own, which stays when the object deletes its storage.
   */
  networkObjectCount(): Promise<number>;
  /** Stops workerd. Storage stays on disk for a relay started on the same directory. */
  stop(): Promise<void>;
}

/**
 * Starts the relay Worker in workerd. Without `persistDirectory` it makes a fresh temporary
 * directory; the caller removes it with `removePersistDirectory` after the last restart.
 */
export async function startWorkerRelay(options: WorkerRelayOptions = {}): Promise<WorkerRelay> {
  const script = await bundleWorker();
  const { date, flags } = await wranglerCompatibility();
  const persistDirectory =
    options.persistDirectory ?? (await mkdtemp(join(tmpdir(), "siderolink-relay-worker-")));
  const operatorToken =
    options.operatorToken === undefined
      ? randomBytes(24).toString("base64url")
      : options.operatorToken;
  const logs: string[] = [];
  const miniflare = new Miniflare(
    convertV4MiniflareOptions({
      name: workerName,
      modules: [{ type: "ESModule", path: bundlePath, contents: script }],
      compatibilityDate: date,
      compatibilityFlags: flags,
      durableObjects: {
        NETWORK: { className: "NetworkObject", useSQLite: true },
        DIRECTORY: { className: "DirectoryObject", useSQLite: true },
        MESH: { className: "MeshObject", useSQLite: true },
      },
      bindings: {
        ...(operatorToken !== null && { RELAY_OPERATOR_TOKEN: operatorToken }),
        ...(options.livenessTimeoutMs && { RELAY_LIVENESS_TIMEOUT_MS: options.livenessTimeoutMs }),
        ...options.vars,
      },
      resourcePersistencePath: persistDirectory,
      host: "127.0.0.1",
      port: 0,
      // Clients talk to the Worker's own socket, not through Miniflare's entry worker, which
      // adds a hop and negotiates permessage-deflate whatever the Worker's flags say.
      unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      log: new Log(LogLevel.WARN),
      // Kept for the tests that read them; errors also go to this process's stderr.
      handleStructuredLogs: (entry) => {
        logs.push(entry.message);
        if (entry.level === "error") process.stderr.write(`workerd: ${entry.message}\n`);
      },
      // No request.cf lookup: it would go to the internet.
      cf: false,
      // For networkTables: reading an object's SQLite from the test.
      unsafeInspectDurableObjects: true,
    }),
  );
  await miniflare.ready;
  const url = await miniflare.unsafeGetDirectURL(workerName);
  return {
    url,
    operatorToken: operatorToken ?? "",
    persistDirectory,
    logs,
    evictNetwork: (network) =>
      miniflare.unsafeEvictDurableObject(workerName, "NetworkObject", {
        name: network,
        webSockets: "hibernate",
      }),
    evictMesh: (clusterId) =>
      miniflare.unsafeEvictDurableObject(workerName, "MeshObject", {
        name: clusterId,
        webSockets: "hibernate",
      }),
    networkTables: async (network) => {
      const storage = await miniflare.unsafeGetDurableObjectStorage(workerName, "NetworkObject", {
        name: network,
      });
      const rows = await storage.exec<{ name: string }>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' ORDER BY name",
      );
      return rows.map((row) => row.name);
    },
    networkObjectCount: async () => {
      const files = await readdir(
        join(persistDirectory, "do", `${workerName}-NetworkObject`),
      ).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return [];
        throw error;
      });
      return files.filter((file) => file.endsWith(".sqlite") && file !== "metadata.sqlite").length;
    },
    stop: () => miniflare.dispose(),
  };
}

export async function removePersistDirectory(relay: WorkerRelay): Promise<void> {
  await rm(relay.persistDirectory, { recursive: true, force: true });
}
