/**
 * The names of every network: for the operator's `GET /v1/networks` and `/metrics`, and for the
 * Worker, which asks it whether a network exists before it wakes that network's object
 * (network-names.ts). Written when a network is created. Each Worker isolate remembers the names
 * it found, so a network's traffic asks once per isolate; names that do not exist ask every
 * time, so the one object carries the load of guessing, as a few reads of its own table, instead
 * of a new object per guess.
 *
 * It also counts what was refused without a network's object: Provision calls by result code
 * (tokens the Worker could not read, tokens naming no network), and other requests for networks
 * that do not exist, by route.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.ts";

export class DirectoryObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS networks (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL)",
    );
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS edge_provisions (code TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    );
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS unknown_networks (route TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    );
  }

  /**
   * Whether network `name` exists. A miss is counted under `route` ("tunnel", "uplink",
   * "admin"); without one (Provision, whose refusal is counted by its result code) it is not.
   */
  has(name: string, route?: string): boolean {
    const found =
      this.ctx.storage.sql.exec("SELECT 1 FROM networks WHERE name = ?", name).toArray().length > 0;
    if (!found && route !== undefined) {
      this.ctx.storage.sql.exec(
        "INSERT INTO unknown_networks (route, count) VALUES (?, 1) ON CONFLICT (route) DO UPDATE SET count = count + 1",
        route,
      );
    }
    return found;
  }

  /** Requests refused because their network does not exist, by route. */
  unknownNetworkCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const row of this.ctx.storage.sql
      .exec<{ route: string; count: number }>(
        "SELECT route, count FROM unknown_networks ORDER BY route",
      )
      .toArray()) {
      counts[row.route] = row.count;
    }
    return counts;
  }

  /** Adds refused Provision calls by result code ("permission_denied": 3). */
  countProvisions(counts: Record<string, number>): void {
    for (const [code, count] of Object.entries(counts)) {
      if (count <= 0) continue;
      this.ctx.storage.sql.exec(
        "INSERT INTO edge_provisions (code, count) VALUES (?, ?) ON CONFLICT (code) DO UPDATE SET count = count + excluded.count",
        code,
        count,
      );
    }
  }

  provisionCounts(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const row of this.ctx.storage.sql
      .exec<{ code: string; count: number }>(
        "SELECT code, count FROM edge_provisions ORDER BY code",
      )
      .toArray()) {
      counts[row.code] = row.count;
    }
    return counts;
  }

  add(name: string): void {
    this.ctx.storage.sql.exec(
      "INSERT INTO networks (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
      name,
      Date.now(),
    );
  }

  list(): string[] {
    return this.ctx.storage.sql
      .exec<{ name: string }>("SELECT name FROM networks ORDER BY name")
      .toArray()
      .map((row) => row.name);
  }
}
