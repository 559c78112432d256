/**
 * The names of every network, for the operator's `GET /v1/networks` and `/metrics`. Written
 * when a network is created, read only by the admin API: provisioning and packets never come
 * here, so one object for the whole relay is no bottleneck.
 */
import { DurableObject } from "cloudflare:workers";
import type { Env } from "./env.ts";

export class DirectoryObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS networks (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL)",
    );
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
