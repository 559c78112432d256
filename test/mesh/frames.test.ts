/** Mesh frames: the layouts of shared/mesh/frame.ts, written out by hand here, and their limits. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DatagramBatcher,
  decodeMeshFrame,
  encodePublish,
  encodeRecordFrame,
  encodeRemoved,
  forEachDatagram,
  MeshFrameError,
} from "../../shared/mesh/codec.ts";
import { MESH_BATCH_BYTES, MeshFrameType } from "../../shared/mesh/frame.ts";
import { MAX_SEALED_RECORD_SIZE, MIN_SEALED_RECORD_SIZE } from "../../shared/mesh/record.ts";

const id = (b: number) => new Uint8Array(32).fill(b);

describe("mesh frames", () => {
  it("DATAGRAMS: 0x23, then member id, u16 length and bytes per datagram", () => {
    const frames: Buffer[] = [];
    const batcher = new DatagramBatcher((frame) => frames.push(Buffer.from(frame)));
    batcher.add(id(1), Uint8Array.of(9, 8, 7));
    batcher.add(id(2), Uint8Array.of(6));
    batcher.flush();
    batcher.flush();
    assert.equal(frames.length, 1);
    const expected = Buffer.concat([
      Buffer.from([0x23]),
      id(1),
      Buffer.from([0, 3, 9, 8, 7]),
      id(2),
      Buffer.from([0, 1, 6]),
    ]);
    assert.deepEqual(frames[0], expected);
    const seen: string[] = [];
    forEachDatagram(expected, (member, datagram) => seen.push(`${member[0]}:${[...datagram]}`));
    assert.deepEqual(seen, ["1:9,8,7", "2:6"]);
  });

  it("a batch flushes before it would pass MESH_BATCH_BYTES, and refuses empty datagrams", () => {
    const sizes: number[] = [];
    const batcher = new DatagramBatcher((frame) => sizes.push(frame.length));
    const datagram = new Uint8Array(1400);
    for (let i = 0; i < 100; i++) batcher.add(id(3), datagram);
    batcher.add(id(3), new Uint8Array(0));
    batcher.flush();
    assert.equal(batcher.dropped, 1);
    assert.ok(sizes.every((size) => size <= MESH_BATCH_BYTES));
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      100 * (34 + 1400) + sizes.length,
    );
  });

  it("a malformed DATAGRAMS frame delivers nothing", () => {
    const good = Buffer.concat([Buffer.from([0x23]), id(1), Buffer.from([0, 1, 5])]);
    const truncated = Buffer.concat([good, id(2), Buffer.from([0, 9, 1])]);
    let calls = 0;
    assert.throws(() => forEachDatagram(truncated, () => calls++), /ends inside a datagram/);
    assert.throws(() => forEachDatagram(Buffer.from([0x23]), () => calls++), /no datagram/);
    assert.equal(calls, 0);
  });

  it("RECORD, REMOVED and PUBLISH carry their fields; record sizes are bounded", () => {
    const record = new Uint8Array(MIN_SEALED_RECORD_SIZE).fill(4);
    const observed = new Uint8Array(16).fill(5);
    const frame = decodeMeshFrame(encodeRecordFrame(id(7), observed, record));
    assert.equal(frame.type, MeshFrameType.Record);
    if (frame.type !== MeshFrameType.Record) return;
    assert.deepEqual(frame.member, id(7));
    assert.deepEqual(frame.observed, observed);
    assert.deepEqual(frame.record, record);
    assert.deepEqual(decodeMeshFrame(encodeRemoved(id(8))), {
      type: MeshFrameType.Removed,
      member: id(8),
    });
    assert.deepEqual([...encodePublish(record).subarray(0, 2)], [0x20, 4]);
    const big = Buffer.concat([Buffer.from([0x20]), new Uint8Array(MAX_SEALED_RECORD_SIZE + 1)]);
    assert.throws(
      () => decodeMeshFrame(big),
      (error: unknown) => error instanceof MeshFrameError && error.tooBig,
    );
    assert.throws(() => decodeMeshFrame(Buffer.from([0x20, 1])), /under/);
    assert.throws(() => decodeMeshFrame(Buffer.from([0x7f])), /unknown mesh frame type 0x7f/);
  });
});
