/**
 * The relay's mesh cluster with in-memory sockets and a hand-driven clock: record expiry and
 * the REMOVED it pushes, replacement of a member's older socket, the per-cluster record limit,
 * publish rate limits, and congestion drops. The runtimes' sockets are covered in relay.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRateLimiter } from "../../relay/app/rate-limit.ts";
import {
  MeshCluster,
  type MeshRecordStore,
  type MeshSocket,
  type StoredRecord,
} from "../../relay/mesh/cluster.ts";
import { formatId } from "../../shared/mesh/cluster.ts";
import {
  DatagramBatcher,
  decodeMeshFrame,
  encodePublish,
  forEachDatagram,
} from "../../shared/mesh/codec.ts";
import { MeshFrameType } from "../../shared/mesh/frame.ts";
import { MIN_SEALED_RECORD_SIZE } from "../../shared/mesh/record.ts";

class FakeSocket implements MeshSocket {
  readonly frames: Uint8Array[] = [];
  closed: { code: number; reason: string } | undefined;
  bufferedAmount = 0;
  send(frame: Uint8Array | string): void {
    if (typeof frame !== "string") this.frames.push(frame.slice());
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
  }
  types(): number[] {
    return this.frames.map((frame) => frame[0]);
  }
}

function setup(limits = {}, publish = { burst: 1000, perSecond: 1000 }) {
  let now = 1_000_000;
  const records = new Map<string, StoredRecord>();
  const store: MeshRecordStore = {
    all: () => [...records.values()],
    put: (record) => records.set(record.member, record),
    delete: (member) => records.delete(member),
  };
  const cluster = new MeshCluster({
    store,
    limits: { recordTtlMs: 60_000, ...limits },
    now: () => now,
    publishLimiter: createRateLimiter(publish),
  });
  return { cluster, records, advance: (ms: number) => (now += ms) };
}

const id = (b: number) => new Uint8Array(32).fill(b);
const blob = (b: number) => new Uint8Array(MIN_SEALED_RECORD_SIZE).fill(b);
const observed = new Uint8Array(16);

describe("mesh cluster", () => {
  it("expires a record RECORD_TTL after its last publish and tells every member", () => {
    const { cluster, records, advance } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    cluster.connect(a, id(1), observed, "192.0.2.1");
    cluster.connect(b, id(2), observed, "192.0.2.2");
    cluster.message(a, encodePublish(blob(7)));
    advance(40_000);
    cluster.message(a, encodePublish(blob(8)));
    advance(40_000);
    assert.equal(cluster.sweep(), 1_000_000 + 80_000 + 60_000 - 40_000, "refreshed, kept");
    assert.equal(records.size, 1);
    advance(20_001);
    assert.equal(cluster.sweep(), undefined);
    assert.equal(records.size, 0);
    const removed = b.frames.at(-1)!;
    assert.deepEqual(decodeMeshFrame(removed), { type: MeshFrameType.Removed, member: id(1) });
    assert.deepEqual(cluster.records(), []);
  });

  it("a newer socket of a member replaces the older one, which is closed", () => {
    const { cluster } = setup();
    const first = new FakeSocket();
    const second = new FakeSocket();
    const other = new FakeSocket();
    cluster.connect(first, id(1), observed, "192.0.2.1");
    cluster.connect(second, id(1), observed, "192.0.2.1");
    cluster.connect(other, id(2), observed, "192.0.2.2");
    assert.equal(first.closed?.code, 4409);
    const batcher = new DatagramBatcher((frame) => cluster.message(other, frame.slice()));
    batcher.add(id(1), Uint8Array.of(1, 2, 3));
    batcher.flush();
    const seen: string[] = [];
    for (const frame of second.frames) {
      if (frame[0] === MeshFrameType.Datagrams) {
        forEachDatagram(frame, (member, datagram) =>
          seen.push(`${formatId(member)}:${[...datagram]}`),
        );
      }
    }
    assert.deepEqual(seen, [`${formatId(id(2))}:1,2,3`]);
    assert.equal(first.types().includes(MeshFrameType.Datagrams), false);
  });

  it("refuses a new member's record beyond maxRecordsPerCluster, but lets members refresh theirs", () => {
    const { cluster, records } = setup({ maxRecordsPerCluster: 2 });
    const sockets = [1, 2, 3].map((n) => {
      const socket = new FakeSocket();
      cluster.connect(socket, id(n), observed, `192.0.2.${n}`);
      cluster.message(socket, encodePublish(blob(n)));
      return socket;
    });
    assert.equal(records.size, 2);
    assert.equal(sockets[2].closed?.code, 1013);
    assert.match(sockets[2].closed?.reason ?? "", /limit of 2 records/);
    cluster.message(sockets[0], encodePublish(blob(9)));
    assert.equal(sockets[0].closed, undefined);
    assert.deepEqual(records.get(formatId(id(1)))?.record, blob(9));
  });

  it("counts publishes over the per-address limit and stores none of them", () => {
    const { cluster, records } = setup({}, { burst: 2, perSecond: 0.001 });
    const a = new FakeSocket();
    cluster.connect(a, id(1), observed, "192.0.2.1");
    for (let i = 0; i < 5; i++) cluster.message(a, encodePublish(blob(i + 1)));
    assert.equal(cluster.counters.publishes, 2);
    assert.equal(cluster.counters.publishRateLimited, 3);
    assert.deepEqual(records.get(formatId(id(1)))?.record, blob(2));
  });

  it("drops datagrams to a congested member and to members it does not hold, counting each", () => {
    const { cluster } = setup();
    const a = new FakeSocket();
    const b = new FakeSocket();
    cluster.connect(a, id(1), observed, "192.0.2.1");
    cluster.connect(b, id(2), observed, "192.0.2.2");
    b.bufferedAmount = cluster.limits.maxBufferedBytes + 1;
    const batcher = new DatagramBatcher((frame) => cluster.message(a, frame.slice()));
    batcher.add(id(2), Uint8Array.of(1));
    batcher.add(id(3), Uint8Array.of(2));
    batcher.add(id(1), Uint8Array.of(3));
    batcher.flush();
    assert.equal(cluster.counters.dropCongested, 1);
    assert.equal(cluster.counters.dropNoMember, 2, "unknown member and the sender itself");
    assert.equal(b.types().includes(MeshFrameType.Datagrams), false);
  });

  it("closes members silent for the liveness timeout and forgets them", () => {
    const { cluster, advance } = setup();
    const quiet = new FakeSocket();
    const chatty = new FakeSocket();
    cluster.connect(quiet, id(1), observed, "192.0.2.1");
    cluster.connect(chatty, id(2), observed, "192.0.2.2");
    advance(30_000);
    cluster.message(chatty, "ping");
    advance(20_000);
    cluster.closeSilent(45_000);
    assert.equal(quiet.closed?.code, 4408);
    assert.equal(chatty.closed, undefined);
    assert.equal(cluster.connected, 1);
  });
});
