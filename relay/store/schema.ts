/**
 * The relay's SQLite schema, shared by node:sqlite (one file for every network) and Durable
 * Objects (one database per network). Migrations are append-only: a new version adds an entry,
 * its statements or, where SQL alone cannot do it, a function run in the same transaction.
 */
import { hashSecret } from "./secret-hash.ts";
import type { SqlExecutor } from "./sql.ts";

type Migration = readonly string[] | ((sql: SqlExecutor) => void);

const MIGRATIONS: readonly Migration[] = [
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
  // Version 2: secrets at rest become SHA-256 digests; the clear ones are hashed in place.
  hashStoredSecrets,
  // Version 3: identity binding and quotas (docs/security.md).
  // One node UUID holds one peer: of earlier duplicates (one UUID, several unique tokens) the
  // one seen last stays; the server's next PEER_LIST drops the others from its device.
  [
    `DELETE FROM peers WHERE EXISTS (
      SELECT 1 FROM peers AS later WHERE later.network = peers.network
        AND later.node_uuid = peers.node_uuid
        AND (later.last_seen > peers.last_seen
          OR (later.last_seen = peers.last_seen AND later.unique_token > peers.unique_token)))`,
    "CREATE UNIQUE INDEX peers_node_uuid ON peers (network, node_uuid)",
    "ALTER TABLE peers ADD COLUMN join_token_id TEXT",
    "ALTER TABLE peers ADD COLUMN rebind_allowed INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE join_tokens ADD COLUMN max_nodes INTEGER",
    "ALTER TABLE networks ADD COLUMN require_unique_token INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE networks ADD COLUMN uplink_secret_hash TEXT",
  ],
  // Version 4: node identities an operator revoked; Provision refuses them until `node admit`.
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

function hashStoredSecrets(sql: SqlExecutor): void {
  sql.all("ALTER TABLE networks RENAME COLUMN admin_secret TO admin_secret_sha256");
  sql.all("ALTER TABLE join_tokens RENAME COLUMN secret TO secret_sha256");
  for (const row of sql.all<{ name: string; secret: string }>(
    "SELECT name, admin_secret_sha256 AS secret FROM networks",
  )) {
    sql.all(
      "UPDATE networks SET admin_secret_sha256 = ? WHERE name = ?",
      hashSecret(row.secret),
      row.name,
    );
  }
  for (const row of sql.all<{ network: string; id: string; secret: string }>(
    "SELECT network, id, secret_sha256 AS secret FROM join_tokens",
  )) {
    sql.all(
      "UPDATE join_tokens SET secret_sha256 = ? WHERE network = ? AND id = ?",
      hashSecret(row.secret),
      row.network,
      row.id,
    );
  }
}

/** Brings the database to the newest schema; safe to call on every start. */
export function migrate(sql: SqlExecutor): void {
  sql.all(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
  );
  const [row] = sql.all<{ version: number | null }>(
    "SELECT MAX(version) AS version FROM schema_migrations",
  );
  const current = row?.version ?? 0;
  MIGRATIONS.forEach((migration, index) => {
    const version = index + 1;
    if (version <= current) return;
    sql.transaction(() => {
      if (typeof migration === "function") migration(sql);
      else for (const statement of migration) sql.all(statement);
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
