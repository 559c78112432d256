/** The SQL store on node:sqlite: the schema both runtimes share, and its uniqueness rules. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { openSqliteDatabase } from "../../relay/node/sqlite.ts";
import { listNetworkNames } from "../../relay/store/schema.ts";
import { createSqlNetworkStore } from "../../relay/store/sql-store.ts";
import {
  NetworkNotFoundError,
  type PeerRecord,
  StoreConflictError,
} from "../../relay/store/store.ts";
import { tempDir } from "./helpers.ts";

const dir = tempDir();
after(() => dir.remove());

const peer = (overrides: Partial<PeerRecord>): PeerRecord => ({
  nodeUuid: "u1",
  uniqueToken: "",
  joinTokenId: null,
  rebindAllowed: false,
  publicKey: "k1",
  address: "fd00::10",
  virtualAddress: "fdae:41e4:649b:9304::10",
  talosVersion: "v1.9.0",
  firstSeen: 1,
  lastSeen: 1,
  rxBytes: 0,
  txBytes: 0,
  rxPackets: 0,
  txPackets: 0,
  ...overrides,
});

test("networks, tokens, peers and counters, across a reopen of the file", async () => {
  const db = openSqliteDatabase(dir.path);
  const alpha = createSqlNetworkStore(db, "alpha");
  await assert.rejects(
    alpha.addToken({ id: "t", secretHash: "s", createdAt: 1, revokedAt: null, maxNodes: null }),
    NetworkNotFoundError,
  );
  await alpha.createNetwork({
    installationId: "install-a",
    adminSecretHash: "secret",
    uplinkSecretHash: null,
    requireUniqueToken: false,
    createdAt: 5,
  });
  await assert.rejects(
    alpha.createNetwork({
      installationId: "x",
      adminSecretHash: "y",
      uplinkSecretHash: null,
      requireUniqueToken: false,
      createdAt: 6,
    }),
    (error: Error) =>
      error instanceof StoreConflictError && /network "alpha" already exists/.test(error.message),
  );
  await createSqlNetworkStore(db, "beta").createNetwork({
    installationId: "install-b",
    adminSecretHash: "s",
    uplinkSecretHash: null,
    requireUniqueToken: false,
    createdAt: 7,
  });
  assert.deepEqual(listNetworkNames(db), ["alpha", "beta"]);
  assert.throws(
    () => createSqlNetworkStore(db, "Bad.Name"),
    /network name: "Bad.Name" is not allowed/,
  );

  await alpha.addToken({
    id: "t1",
    secretHash: "s1",
    createdAt: 10,
    revokedAt: null,
    maxNodes: null,
  });
  assert.equal(await alpha.revokeToken("t1", 20), true);
  assert.equal(await alpha.revokeToken("t1", 30), false, "a token is revoked once");

  await alpha.savePeer(peer({}));
  await assert.rejects(
    alpha.savePeer(peer({ nodeUuid: "u2", virtualAddress: "fdae:41e4:649b:9304::11" })),
    (error: Error) =>
      error instanceof StoreConflictError &&
      /fd00::10 .* already belongs to node u1/.test(error.message),
  );
  // The same addresses in another network are no conflict: each network has its own prefix.
  await createSqlNetworkStore(db, "beta").savePeer(peer({}));
  await alpha.savePeer(peer({ publicKey: "k2", lastSeen: 9 }));
  await alpha.recordTraffic("fdae:41e4:649b:9304::10", {
    rxBytes: 100,
    txBytes: 50,
    rxPackets: 2,
    txPackets: 1,
    lastSeen: 42,
  });
  await alpha.recordTraffic("fdae:41e4:649b:9304::10", {
    rxBytes: 1,
    txBytes: 1,
    rxPackets: 1,
    txPackets: 1,
    lastSeen: 40,
  });
  await alpha.setPredefinedAddress("u9", "fd00::99");
  db.close();

  const reopened = openSqliteDatabase(dir.path);
  const again = createSqlNetworkStore(reopened, "alpha");
  assert.equal((await again.network())?.installationId, "install-a");
  assert.equal((await again.tokens())[0].revokedAt, 20);
  assert.deepEqual(await again.peerByVirtualAddress("fdae:41e4:649b:9304::10"), {
    ...peer({ publicKey: "k2" }),
    lastSeen: 42,
    rxBytes: 101,
    txBytes: 51,
    rxPackets: 3,
    txPackets: 2,
  });
  assert.equal(await again.peerCount(), 1);
  assert.equal(await again.predefinedAddress("u9"), "fd00::99");
  assert.equal(await again.removePeer("u1"), true);
  assert.equal(await again.peerByUuid("u1"), undefined);
  assert.equal(await createSqlNetworkStore(reopened, "beta").peerCount(), 1);
  reopened.close();
});

test("one node UUID holds one peer: saving it under another unique token replaces the record", async () => {
  const db = openSqliteDatabase(tempDir().path);
  const net = createSqlNetworkStore(db, "one-uuid");
  await net.createNetwork({
    installationId: "i",
    adminSecretHash: "s",
    uplinkSecretHash: null,
    requireUniqueToken: false,
    createdAt: 1,
  });
  await net.savePeer(peer({ uniqueToken: "a" }));
  await net.savePeer(peer({ uniqueToken: "b", publicKey: "k2" }));
  assert.equal(await net.peerCount(), 1);
  assert.equal((await net.peerByUuid("u1"))?.uniqueToken, "b");
  assert.equal(await net.allowRebind("u1"), true);
  assert.equal((await net.peerByUuid("u1"))?.rebindAllowed, true);
  assert.equal(await net.allowRebind("nobody"), false);
  db.close();
});
