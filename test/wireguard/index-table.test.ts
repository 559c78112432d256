import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createNobleCryptoProvider } from "../../shared/wireguard/crypto.ts";
import { IndexTable } from "../../shared/wireguard/index-table.ts";
import { Keypair } from "../../shared/wireguard/keypair.ts";

const noble = createNobleCryptoProvider();

/** A random source that returns `indices` in order, as the 4 little-endian bytes WireGuard puts on the wire. */
function scripted(...indices: number[]): {
  randomBytes(length: number): Uint8Array;
  left(): number;
} {
  const queue = [...indices];
  return {
    randomBytes(length) {
      assert.equal(length, 4, "an index is 4 random bytes");
      const next = queue.shift();
      assert.ok(next !== undefined, "the table drew more indices than the test scripted");
      const bytes = new Uint8Array(4);
      new DataView(bytes.buffer).setUint32(0, next, true);
      return bytes;
    },
    left: () => queue.length,
  };
}

function keypairFor(localIndex: number): Keypair {
  const aead = noble.createTransportAead(new Uint8Array(32));
  return new Keypair({
    send: aead,
    receive: aead,
    created: 0,
    isInitiator: true,
    localIndex,
    remoteIndex: 7,
  });
}

describe("index table", () => {
  it("hands out the random index, read little-endian", () => {
    const table = new IndexTable<string>(scripted(0xdeadbeef));
    assert.equal(table.newIndexForHandshake("alice"), 0xdeadbeef);
    assert.equal(table.lookup(0xdeadbeef)?.peer, "alice");
    assert.equal(table.size, 1);
  });

  it("redraws on a collision with an index in use, and never hands out 0", () => {
    const random = scripted(0x1234, 0, 0x1234, 0xffff_ffff);
    const table = new IndexTable<string>(random);
    assert.equal(table.newIndexForHandshake("alice"), 0x1234);
    assert.equal(table.newIndexForHandshake("bob"), 0xffff_ffff, "0 and 0x1234 were skipped");
    assert.equal(random.left(), 0);
    assert.equal(table.lookup(0x1234)?.peer, "alice", "the collision left the first owner alone");
    assert.equal(table.lookup(0xffff_ffff)?.peer, "bob");
    assert.equal(table.lookup(0), undefined);
    assert.equal(table.size, 2);
  });

  it("an index names a handshake until the derived keypair is swapped in", () => {
    const table = new IndexTable<string>(scripted(42));
    const index = table.newIndexForHandshake("alice");
    assert.equal(table.lookupHandshake(index), "alice");
    assert.equal(table.lookup(index)?.keypair, null);

    const keypair = keypairFor(index);
    table.swapIndexForKeypair(keypair);
    assert.equal(table.lookup(index)?.keypair, keypair);
    assert.equal(table.lookup(index)?.peer, "alice");
    assert.equal(table.lookupHandshake(index), null, "a response can no longer claim this index");
  });

  it("delete frees the index: lookups miss and the index can be handed out again", () => {
    const table = new IndexTable<string>(scripted(42, 42));
    const index = table.newIndexForHandshake("alice");
    table.swapIndexForKeypair(keypairFor(index));
    table.delete(index);
    assert.equal(table.lookup(index), undefined);
    assert.equal(table.lookupHandshake(index), null);
    assert.equal(table.size, 0);
    assert.equal(table.newIndexForHandshake("bob"), 42, "a freed index is not a collision");
    assert.equal(table.lookup(42)?.peer, "bob");
    assert.equal(table.lookup(42)?.keypair, null, "the old keypair did not come back with it");
  });

  it("a keypair whose index was released meanwhile stays unreachable", () => {
    const table = new IndexTable<string>(scripted(42));
    const index = table.newIndexForHandshake("alice");
    table.delete(index);
    table.swapIndexForKeypair(keypairFor(index));
    assert.equal(table.lookup(index), undefined);
    assert.equal(table.size, 0);
  });

  it("deleting an unknown index changes nothing", () => {
    const table = new IndexTable<string>(scripted(42));
    table.newIndexForHandshake("alice");
    table.delete(43);
    table.delete(0);
    assert.equal(table.lookup(42)?.peer, "alice");
    assert.equal(table.size, 1);
  });

  it("with real randomness, many handshakes get distinct non-zero indices", () => {
    const table = new IndexTable<number>(noble);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const index = table.newIndexForHandshake(i);
      assert.ok(index > 0 && index <= 0xffff_ffff, `index ${index} out of range`);
      assert.ok(!seen.has(index), `index ${index} handed out twice`);
      seen.add(index);
      assert.equal(table.lookupHandshake(index), i);
    }
    assert.equal(table.size, 2000);
  });
});
