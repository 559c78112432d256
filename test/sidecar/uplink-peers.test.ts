/**
 * The server's peer reconciliation against a fake WireGuard table: every change applied before
 * its ACK, lists after a reconnect reconciled without duplicates or churn, revoked peers
 * removed, a re-provisioned node's old key dropped.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatKey } from "../../shared/siderolink/keys.ts";
import type { ControlMessage, PeerEntry } from "../../shared/tunnel/decode.ts";
import { decodeControl } from "../../shared/tunnel/decode.ts";
import { encodePeerEvent, encodePeerList } from "../../shared/tunnel/encode.ts";
import { FrameType } from "../../shared/tunnel/frame.ts";
import { PeerReconciler, type PeerTable, type UplinkPeer } from "../../sidecar/uplink/peers.ts";

/** A WireGuard stand-in that records every call and holds its peers like `wg show` would. */
class FakeTable implements PeerTable {
  readonly calls: string[] = [];
  readonly peers = new Map<string, string>();
  gate: Promise<void> = Promise.resolve();
  /** Called as setPeer starts, before it waits for the gate. */
  onSetPeer: () => void = () => {};

  async setPeer(peer: UplinkPeer): Promise<void> {
    this.onSetPeer();
    await this.gate;
    this.calls.push(`set ${peer.publicKey.slice(0, 4)} ${peer.address}`);
    this.peers.set(peer.publicKey, peer.address);
  }

  async removePeer(peer: UplinkPeer): Promise<void> {
    await this.gate;
    this.calls.push(`remove ${peer.publicKey.slice(0, 4)}`);
    this.peers.delete(peer.publicKey);
  }
}

function entry(n: number, addressByte = n): PeerEntry {
  const publicKey = new Uint8Array(32).fill(n);
  const address = new Uint8Array(16);
  address.set([0xfd, 0xae], 0);
  address[15] = addressByte;
  const virtualAddress = new Uint8Array(16);
  virtualAddress.set([0xfd, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x04], 0);
  virtualAddress[15] = addressByte;
  return { publicKey, address, virtualAddress };
}

const key = (n: number): string => formatKey(new Uint8Array(32).fill(n));
const short = (n: number): string => key(n).slice(0, 4);
/** Messages go through the real codec, as they would off the wire. */
const added = (seq: number, peer: PeerEntry): ControlMessage =>
  decodeControl(encodePeerEvent(FrameType.PeerAdded, seq, peer));
const removed = (seq: number, peer: PeerEntry): ControlMessage =>
  decodeControl(encodePeerEvent(FrameType.PeerRemoved, seq, peer));
const list = (seq: number, peers: PeerEntry[]): ControlMessage[] =>
  encodePeerList(seq, peers).map((chunk) => decodeControl(chunk));

describe("PeerReconciler", () => {
  it("applies PEER_ADDED and PEER_REMOVED and answers with their sequence numbers", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    assert.equal(await reconciler.handle(added(7, entry(1))), 7);
    assert.equal(await reconciler.handle(removed(8, entry(1))), 8);
    assert.deepEqual(table.calls, [`set ${short(1)} fdae::1`, `remove ${short(1)}`]);
    assert.equal(table.peers.size, 0);
  });

  it("acknowledges only once WireGuard has the peer", async () => {
    const table = new FakeTable();
    let open!: () => void;
    table.gate = new Promise((resolve) => {
      open = resolve;
    });
    const configuring = new Promise<void>((resolve) => {
      table.onSetPeer = resolve;
    });
    const reconciler = new PeerReconciler(table);
    let acked: number | undefined;
    const pending = reconciler.handle(added(3, entry(1))).then((seq) => {
      acked = seq;
    });
    await configuring;
    // Nothing here waits on I/O or timers: once the queue of ready callbacks has drained, an ACK
    // that did not wait for the table would already be in.
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(acked, undefined, "no ACK while the table is still configuring");
    assert.equal(table.peers.size, 0);
    open();
    await pending;
    assert.equal(acked, 3);
    assert.equal(table.peers.get(key(1)), "fdae::1");
  });

  it("a repeated PEER_ADDED for an unchanged peer touches nothing", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    await reconciler.handle(added(1, entry(1)));
    assert.equal(await reconciler.handle(added(2, entry(1))), 2);
    assert.deepEqual(table.calls, [`set ${short(1)} fdae::1`]);
  });

  it("after a reconnect, the list adds the missing, removes the revoked and leaves the rest", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    for (const message of list(1, [entry(1), entry(2), entry(3)])) await reconciler.handle(message);
    table.calls.length = 0;

    reconciler.connectionReset();
    let acked: number | undefined;
    for (const message of list(9, [entry(1), entry(3), entry(4)]))
      acked = await reconciler.handle(message);
    assert.equal(acked, 9);
    assert.deepEqual(table.calls, [`remove ${short(2)}`, `set ${short(4)} fdae::4`]);
    assert.deepEqual([...table.peers.keys()].sort(), [key(1), key(3), key(4)].sort());
    assert.deepEqual([...reconciler.peers.keys()].sort(), [key(1), key(3), key(4)].sort());
  });

  it("an empty list removes every peer", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    await reconciler.handle(added(1, entry(1)));
    for (const message of list(2, [])) await reconciler.handle(message);
    assert.equal(table.peers.size, 0);
  });

  it("a list in several chunks is applied once, on its last chunk", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    const peers = Array.from({ length: 1500 }, (_, i) => entry(i % 250, i % 250));
    const unique = new Map(peers.map((p) => [formatKey(p.publicKey), p]));
    const chunks = list(4, peers);
    assert.equal(chunks.length, 2, "1500 entries take two chunks");
    assert.equal(await reconciler.handle(chunks[0]), undefined, "no ACK before the last chunk");
    assert.equal(table.calls.length, 0);
    assert.equal(await reconciler.handle(chunks[1]), 4);
    assert.equal(table.peers.size, unique.size);
  });

  it("a half-received list is forgotten on reconnect", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    const peers = Array.from({ length: 1100 }, (_, i) => entry(i % 200, i % 200));
    await reconciler.handle(list(5, peers)[0]);
    reconciler.connectionReset();
    for (const message of list(6, [entry(7)])) await reconciler.handle(message);
    assert.deepEqual([...table.peers.keys()], [key(7)]);
  });

  it("a node provisioned again with a new key on the same addresses replaces its old peer", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    await reconciler.handle(added(1, entry(1, 9)));
    await reconciler.handle(added(2, entry(2, 9)));
    assert.deepEqual(table.calls, [
      `set ${short(1)} fdae::9`,
      `remove ${short(1)}`,
      `set ${short(2)} fdae::9`,
    ]);
    assert.deepEqual([...table.peers.keys()], [key(2)]);
  });

  it("a changed address of a known key is set again", async () => {
    const table = new FakeTable();
    const reconciler = new PeerReconciler(table);
    await reconciler.handle(added(1, entry(1, 1)));
    for (const message of list(2, [entry(1, 5)])) await reconciler.handle(message);
    assert.equal(table.peers.get(key(1)), "fdae::5");
    assert.equal(table.peers.size, 1);
  });
});
