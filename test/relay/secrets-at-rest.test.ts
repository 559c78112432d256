/**
 * Secrets at rest on the Node relay: whoever can read the data dir (or a backup of it) must not
 * find an admin secret or a join token there. The data dir is 0700 and the database with its
 * -wal and -shm files 0600 at every start, whatever they were before; the database holds only
 * SHA-256 digests of secrets; and a database written by an older relay, with secrets in clear,
 * is migrated in place so that the same secrets still authenticate.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { DATABASE_FILE } from "../../relay/node/sqlite.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { base64, createNetwork, randomKey, startRelay, tempDir, Uplink } from "./helpers.ts";

const dirs: { remove(): void }[] = [];
after(() => {
  for (const dir of dirs) dir.remove();
});

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8);
}

/** Every byte the relay keeps in the data dir's database files. */
function storedBytes(dataDir: string): string {
  return ["", "-wal", "-shm"]
    .map((suffix) => join(dataDir, `${DATABASE_FILE}${suffix}`))
    .filter((path) => existsSync(path))
    .map((path) => readFileSync(path).toString("latin1"))
    .join("");
}

async function provision(url: string, joinToken: string) {
  return createClient(ProvisionService, createConnectTransport({ baseUrl: url })).provision({
    nodeUuid: crypto.randomUUID(),
    nodePublicKey: base64(randomKey()),
    joinToken,
  });
}

test("an existing 0755 data dir and 0644 database are made 0700 and 0600 at start", async () => {
  const root = tempDir();
  dirs.push(root);
  const dataDir = join(root.path, "data");
  mkdirSync(dataDir, { mode: 0o755 });
  chmodSync(dataDir, 0o755);
  const first = await startRelay(dataDir);
  try {
    await createNetwork(first, "perm");
    assert.equal(mode(dataDir), "700");
    for (const suffix of ["", "-wal", "-shm"]) {
      const path = join(dataDir, `${DATABASE_FILE}${suffix}`);
      if (existsSync(path)) assert.equal(mode(path), "600", path);
    }
  } finally {
    await first.close();
  }

  chmodSync(dataDir, 0o755);
  chmodSync(join(dataDir, DATABASE_FILE), 0o644);
  const second = await startRelay(dataDir);
  try {
    assert.equal(mode(dataDir), "700");
    assert.equal(mode(join(dataDir, DATABASE_FILE)), "600");
    for (const suffix of ["-wal", "-shm"]) {
      const path = join(dataDir, `${DATABASE_FILE}${suffix}`);
      assert.ok(existsSync(path), `${path} exists while the relay runs`);
      assert.equal(mode(path), "600", path);
    }
  } finally {
    await second.close();
  }
});

test("the database keeps no admin secret or join token in clear", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const server = await startRelay(dir.path);
  try {
    const network = await createNetwork(server, "clear");
    const secret = network.joinToken.split(".")[1];
    const bytes = storedBytes(dir.path);
    assert.ok(!bytes.includes(network.adminSecret), "admin secret in the database");
    assert.ok(!bytes.includes(secret), "join token secret in the database");
    // And they still work.
    const uplink = new Uplink(server, "clear", network.uplinkSecret);
    try {
      await uplink.ready();
      assert.match((await provision(server.url, network.joinToken)).grpcPeerAddrPort, /:50888$/);
    } finally {
      uplink.close();
    }
  } finally {
    await server.close();
  }
});

/** The schema of version 1, as an older relay wrote it: secrets in clear. */
const VERSION_1 = [
  "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
  `CREATE TABLE networks (name TEXT PRIMARY KEY, installation_id TEXT NOT NULL,
     admin_secret TEXT NOT NULL, server_public_key TEXT, created_at INTEGER NOT NULL)`,
  `CREATE TABLE join_tokens (network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
     id TEXT NOT NULL, secret TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER,
     PRIMARY KEY (network, id))`,
  `CREATE TABLE peers (network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
     node_uuid TEXT NOT NULL, unique_token TEXT NOT NULL, public_key TEXT NOT NULL,
     address TEXT NOT NULL, virtual_address TEXT NOT NULL, talos_version TEXT NOT NULL,
     first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, rx_bytes INTEGER NOT NULL DEFAULT 0,
     tx_bytes INTEGER NOT NULL DEFAULT 0, rx_packets INTEGER NOT NULL DEFAULT 0,
     tx_packets INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (network, node_uuid, unique_token))`,
  "CREATE UNIQUE INDEX peers_address ON peers (network, address)",
  "CREATE UNIQUE INDEX peers_virtual_address ON peers (network, virtual_address)",
  `CREATE TABLE predefined_addresses (network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
     node_uuid TEXT NOT NULL, address TEXT NOT NULL, PRIMARY KEY (network, node_uuid))`,
  "INSERT INTO schema_migrations (version, applied_at) VALUES (1, 1)",
];

test("a version 1 database with clear secrets is migrated; the same secrets authenticate", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const adminSecret = "Adm1nSecretFromAnOlderRelay0123456789abcdefg";
  const tokenSecret = "J0inTokenFromAnOlderRelay0123456789abcdefghi";
  const revokedSecret = "Rev0kedTokenFromAnOlderRelay0123456789abcdef";
  const old = new DatabaseSync(join(dir.path, DATABASE_FILE));
  for (const statement of VERSION_1) old.exec(statement);
  old
    .prepare("INSERT INTO networks VALUES (?, ?, ?, NULL, ?)")
    .run("legacy", "0b7c3c2e-8f5e-4d0a-9a57-3f4d5e6f7a8b", adminSecret, 1);
  old
    .prepare("INSERT INTO join_tokens VALUES (?, ?, ?, ?, ?)")
    .run("legacy", "aaaa0001", tokenSecret, 2, null);
  old
    .prepare("INSERT INTO join_tokens VALUES (?, ?, ?, ?, ?)")
    .run("legacy", "aaaa0002", revokedSecret, 3, 4);
  old.close();
  assert.ok(storedBytes(dir.path).includes(adminSecret), "the old database holds it in clear");

  const server = await startRelay(dir.path);
  try {
    const uplink = new Uplink(server, "legacy", adminSecret);
    try {
      await uplink.ready();
      assert.match(
        (await provision(server.url, `legacy.${tokenSecret}`)).grpcPeerAddrPort,
        /:50888$/,
      );
      await assert.rejects(provision(server.url, `legacy.${revokedSecret}`), /invalid join token/);
      await assert.rejects(provision(server.url, `legacy.${adminSecret}`), /invalid join token/);
    } finally {
      uplink.close();
    }
    const admin = await fetch(`${server.url}/v1/networks/legacy/tokens`, {
      headers: { authorization: `Bearer ${adminSecret}` },
    });
    assert.equal(admin.status, 200);
    const { tokens } = (await admin.json()) as { tokens: { id: string; joinToken: unknown }[] };
    assert.deepEqual(
      tokens.map((token) => [token.id, token.joinToken]),
      [
        ["aaaa0001", null],
        ["aaaa0002", null],
      ],
    );
  } finally {
    await server.close();
  }
  const bytes = storedBytes(dir.path);
  for (const secret of [adminSecret, tokenSecret, revokedSecret])
    assert.ok(!bytes.includes(secret), `${secret.slice(0, 8)}... still in the database files`);
});
