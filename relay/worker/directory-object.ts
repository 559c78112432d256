/**
 * The names of every network, for the operator's `GET /v1/networks` and `/metrics`. Written
 * when a network is created, read only by the admin API: provisioning and packets never come
 * here, so one object for the whole relay is no bottleneck.
 *
 * It also counts the Provision calls refused where no network's object keeps a count: tokens
 * the Worker could not read, and tokens naming no network (their object keeps no storage).
 * Those are the guessing attempts; only refusals come here, so its load is theirs.
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
