/**
 * The relay's SQLite schema, shared by node:sqlite (one file for every network) and Durable
 * Objects (one database per network). Migrations are append-only: a new version adds an entry.
 */
import type { SqlExecutor } from "./sql.ts";

const MIGRATIONS: readonly (readonly string[])[] = [
  [
    `CREATE TABLE networks (
      name TEXT PRIMARY KEY,
      installation_id TEXT NOT NULL,
      admin_secret TEXT NOT NULL,
      server_public_key TEXT,
      created_at INTEGER NOT NULL
    )`,
    `CREATE TABLE join_tokens (
      network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
      id TEXT NOT NULL,
      secret TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      revoked_at INTEGER,
      PRIMARY KEY (network, id)
    )`,
    `CREATE TABLE peers (
      network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
      node_uuid TEXT NOT NULL,
      unique_token TEXT NOT NULL,
      public_key TEXT NOT NULL,
      address TEXT NOT NULL,
      virtual_address TEXT NOT NULL,
      talos_version TEXT NOT NULL,
      first_seen INTEGER NOT NULL,
      last_seen INTEGER NOT NULL,
      rx_bytes INTEGER NOT NULL DEFAULT 0,
      tx_bytes INTEGER NOT NULL DEFAULT 0,
      rx_packets INTEGER NOT NULL DEFAULT 0,
      tx_packets INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (network, node_uuid, unique_token)
    )`,
    "CREATE UNIQUE INDEX peers_address ON peers (network, address)",
    "CREATE UNIQUE INDEX peers_virtual_address ON peers (network, virtual_address)",
    `CREATE TABLE predefined_addresses (
      network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
      node_uuid TEXT NOT NULL,
      address TEXT NOT NULL,
      PRIMARY KEY (network, node_uuid)
    )`,
  ],
  // Node identities an operator revoked: Provision refuses them until `node admit`.
  [
    `CREATE TABLE revoked_identities (
      network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
      node_uuid TEXT NOT NULL,
      unique_token TEXT NOT NULL,
      revoked_at INTEGER NOT NULL,
      PRIMARY KEY (network, node_uuid, unique_token)
    )`,
  ],
];

/** Brings the database to the newest schema; safe to call on every start. */
export function migrate(sql: SqlExecutor): void {
  sql.all(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
  );
  const [row] = sql.all<{ version: number | null }>(
    "SELECT MAX(version) AS version FROM schema_migrations",
  );
  const current = row?.version ?? 0;
  MIGRATIONS.forEach((statements, index) => {
    const version = index + 1;
    if (version <= current) return;
    sql.transaction(() => {
      for (const statement of statements) sql.all(statement);
      sql.all(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
        version,
        Date.now(),
      );
    });
  });
}

/** Names of every network in this database (one on a Durable Object, all of them on Node). */
export function listNetworkNames(sql: SqlExecutor): string[] {
  return sql
    .all<{ name: string }>("SELECT name FROM networks ORDER BY name")
    .map((row) => row.name);
}
