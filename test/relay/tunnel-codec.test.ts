import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import {
  decodeControl,
  decodeNodeDatagrams,
  decodePeerDatagrams,
  FrameError,
  frameType,
  type PeerEntry,
} from "../../shared/tunnel/decode.ts";
import {
  createBatchEncoder,
  encodeAck,
  encodeHello,
  encodePeerEvent,
  encodePeerList,
} from "../../shared/tunnel/encode.ts";
import {
  CloseCode,
  FrameType,
  MAX_DATAGRAM_SIZE,
  MAX_FRAME_SIZE,
  PEER_LIST_CHUNK,
} from "../../shared/tunnel/frame.ts";
import { isWellFormedMessage } from "../../shared/wireguard/constants.ts";

const bytes = (...values: number[]) => new Uint8Array(values);
const filled = (length: number, value: number) => new Uint8Array(length).fill(value);

function decodeAll(frame: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const count = decodeNodeDatagrams(frame, out);
  return out.slice(0, count);
}

function expectFrameError(fn: () => unknown, kind: string, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FrameError, `expected FrameError, got ${String(error)}`);
    assert.equal(error.kind, kind, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

describe("datagram batches", () => {
  test("NODE_DATAGRAMS layout: type, then u16 length + bytes per datagram", () => {
    const encoder = createBatchEncoder(false);
    assert.ok(encoder.add(bytes(0xaa, 0xbb)));
    assert.ok(encoder.add(bytes(0xcc)));
    assert.deepEqual(encoder.finish(), bytes(0x01, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x01, 0xcc));
    assert.deepEqual(decodeAll(bytes(0x01, 0x00, 0x01, 0x07, 0x01, 0x00, ...filled(0x100, 9))), [
      bytes(7),
      filled(0x100, 9),
    ]);
  });

  test("PEER_DATAGRAMS layout: type, then 16-byte tag + u16 length + bytes per datagram", () => {
    const tag = Uint8Array.from({ length: 16 }, (_, i) => i);
    const encoder = createBatchEncoder(true);
    assert.ok(encoder.add(bytes(0xee), tag));
    assert.deepEqual(encoder.finish(), bytes(0x02, ...tag, 0x00, 0x01, 0xee));
    const tags: Uint8Array[] = [];
    const datagrams: Uint8Array[] = [];
    assert.equal(decodePeerDatagrams(bytes(0x02, ...tag, 0x00, 0x02, 5, 6), tags, datagrams), 1);
    assert.deepEqual([tags[0], datagrams[0]], [tag, bytes(5, 6)]);
  });

  test("round trip of any batch, through one reused encoder", () => {
    const encoder = createBatchEncoder(true);
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            tag: fc.uint8Array({ minLength: 16, maxLength: 16 }),
            data: fc.uint8Array({ minLength: 1, maxLength: 3000 }),
          }),
          {
            minLength: 1,
            maxLength: 40,
          },
        ),
        (items) => {
          for (const { tag, data } of items) assert.ok(encoder.add(data, tag));
          const frame = encoder.finish().slice();
          const tags: Uint8Array[] = [];
          const datagrams: Uint8Array[] = [];
          const count = decodePeerDatagrams(frame, tags, datagrams);
          assert.equal(count, items.length);
          items.forEach(({ tag, data }, i) => {
            assert.deepEqual(tags[i], tag);
            assert.deepEqual(datagrams[i], data);
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  test("fed two bytes at a time, a batch decodes only at datagram boundaries", () => {
    const datagrams = [filled(5, 1), filled(1, 2), filled(300, 3), filled(2, 4)];
    const encoder = createBatchEncoder(false);
    for (const datagram of datagrams) encoder.add(datagram);
    const frame = encoder.finish().slice();
    const boundaries = new Map<number, number>();
    let end = 1;
    datagrams.forEach((datagram, i) => {
      end += 2 + datagram.length;
      boundaries.set(end, i + 1);
    });
    for (let length = 1; length <= frame.length; length += 2) {
      const prefix = frame.subarray(0, length);
      const complete = boundaries.get(length);
      if (complete === undefined) {
        expectFrameError(() => decodeAll(prefix), "truncated");
      } else {
        assert.deepEqual(decodeAll(prefix), datagrams.slice(0, complete));
      }
    }
    assert.ok(boundaries.has(frame.length));
  });

  test("limits: frame size checked first, empty datagrams and empty batches refused", () => {
    const huge = new Uint8Array(MAX_FRAME_SIZE + 1);
    huge[0] = FrameType.NodeDatagrams;
    assert.throws(
      () => decodeAll(huge),
      (error: FrameError) => {
        assert.equal(error.kind, "too_big");
        assert.equal(error.closeCode, CloseCode.TooBig);
        assert.match(
          error.message,
          new RegExp(`${MAX_FRAME_SIZE + 1} bytes \\(limit ${MAX_FRAME_SIZE}\\)`),
        );
        return true;
      },
    );
    expectFrameError(() => decodeAll(bytes(0x01, 0x00, 0x00)), "empty_datagram");
    expectFrameError(() => decodeAll(bytes(0x01)), "truncated", /holds no datagram/);
    expectFrameError(() => decodeAll(bytes()), "empty");
    expectFrameError(() => decodeAll(bytes(0x02, 0, 1, 1)), "unexpected_type");
    expectFrameError(() => frameType(bytes(0x99)), "unknown_type", /0x99/);
  });

  test("the encoder stops at its limit and refuses datagrams that no frame can carry", () => {
    const encoder = createBatchEncoder(false, 100);
    assert.ok(encoder.add(filled(50, 1)));
    assert.equal(encoder.add(filled(50, 2)), false, "1 + 52 + 52 > 100");
    assert.equal(encoder.count, 1);
    assert.equal(encoder.finish().length, 53);
    assert.throws(() => encoder.add(new Uint8Array(0)), /outside 1\.\.65535/);
    assert.throws(
      () => createBatchEncoder(false).add(new Uint8Array(MAX_DATAGRAM_SIZE + 1)),
      /65536 bytes/,
    );
    assert.throws(
      () => createBatchEncoder(true).add(filled(4, 1), filled(15, 0)),
      /expected 16 bytes for tag, got 15/,
    );
    const full = createBatchEncoder(false);
    let added = 0;
    while (full.add(filled(MAX_DATAGRAM_SIZE, 7))) added++;
    assert.equal(added, Math.floor((MAX_FRAME_SIZE - 1) / (MAX_DATAGRAM_SIZE + 2)));
    assert.ok(full.finish().length <= MAX_FRAME_SIZE);
  });

  test("random bytes never decode to anything but a datagram batch or a FrameError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (frame, tagged) => {
        try {
          if (tagged) decodePeerDatagrams(frame, [], []);
          else decodeNodeDatagrams(frame, []);
        } catch (error) {
          assert.ok(error instanceof FrameError, String(error));
        }
        try {
          decodeControl(frame);
        } catch (error) {
          assert.ok(error instanceof FrameError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("batch sender", () => {
  test("sends a full batch before the datagram that does not fit, and the rest on flush", () => {
    // Room for two 100-byte datagrams (1 + 2 * (2 + 100) = 205 bytes), not three.
    const frames: Uint8Array[] = [];
    const sender = createBatchSender(createBatchEncoder(false, 250), (frame) =>
      frames.push(frame.slice()),
    );
    for (let i = 1; i <= 5; i++) sender.add(filled(100, i));
    assert.equal(frames.length, 2, "two full batches went out while adding");
    sender.flush();
    assert.deepEqual(
      frames.map((frame) => decodeAll(frame).map((d) => d[0])),
      [[1, 2], [3, 4], [5]],
    );
    sender.flush();
    assert.equal(frames.length, 3, "flushing an empty batch sends nothing");
  });

  test("keeps each datagram's tag, across frames", () => {
    const frames: Uint8Array[] = [];
    const sender = createBatchSender(createBatchEncoder(true, 300), (frame) =>
      frames.push(frame.slice()),
    );
    for (let i = 1; i <= 3; i++) sender.add(filled(100, i), filled(16, 10 + i));
    sender.flush();
    const seen: [number, number][] = [];
    for (const frame of frames) {
      const tags: Uint8Array[] = [];
      const datagrams: Uint8Array[] = [];
      const count = decodePeerDatagrams(frame, tags, datagrams);
      for (let i = 0; i < count; i++) seen.push([tags[i][0], datagrams[i][0]]);
    }
    assert.equal(frames.length, 2);
    assert.deepEqual(seen, [
      [11, 1],
      [12, 2],
      [13, 3],
    ]);
  });

  test("two senders may share one encoder when each flushes before the other adds", () => {
    const encoder = createBatchEncoder(false);
    const a: Uint8Array[] = [];
    const b: Uint8Array[] = [];
    const toA = createBatchSender(encoder, (frame) => a.push(frame.slice()));
    const toB = createBatchSender(encoder, (frame) => b.push(frame.slice()));
    toA.add(bytes(1));
    toA.flush();
    toB.add(bytes(2));
    toB.add(bytes(3));
    toB.flush();
    assert.deepEqual(a.map(decodeAll), [[bytes(1)]]);
    assert.deepEqual(b.map(decodeAll), [[bytes(2), bytes(3)]]);
  });

  test("a datagram too big for an empty batch is refused by size, sending what was batched", () => {
    const frames: Uint8Array[] = [];
    const sender = createBatchSender(createBatchEncoder(false, 50), (frame) =>
      frames.push(frame.slice()),
    );
    sender.add(bytes(7));
    assert.throws(
      () => sender.add(filled(60, 1)),
      /datagram of 60 bytes does not fit an empty batch/,
    );
    assert.deepEqual(frames.map(decodeAll), [[bytes(7)]]);
  });
});

describe("uplink control frames", () => {
  const peer = (n: number): PeerEntry => ({
    publicKey: filled(32, n & 0xff),
    address: filled(16, (n >> 8) & 0xff),
    virtualAddress: filled(16, 0xf0),
  });

  test("HELLO: type, version, 32-byte key", () => {
    assert.deepEqual(encodeHello(1, filled(32, 0x55)), bytes(0x10, 1, ...filled(32, 0x55)));
    assert.deepEqual(decodeControl(bytes(0x10, 7, ...filled(32, 0x55))), {
      type: FrameType.Hello,
      version: 7,
      serverPublicKey: filled(32, 0x55),
    });
    expectFrameError(
      () => decodeControl(bytes(0x10, 1, ...filled(31, 0))),
      "truncated",
      /HELLO truncated: 33 bytes, need 34/,
    );
    expectFrameError(() => decodeControl(bytes(0x10, 1, ...filled(33, 0))), "trailing_bytes");
  });

  test("PEER_ADDED, PEER_REMOVED and ACK carry a big-endian u32 seq", () => {
    const frame = encodePeerEvent(FrameType.PeerAdded, 0x01020304, peer(3));
    assert.deepEqual(frame.subarray(0, 5), bytes(0x11, 1, 2, 3, 4));
    assert.deepEqual(
      frame.subarray(5),
      bytes(...filled(32, 3), ...filled(16, 0), ...filled(16, 0xf0)),
    );
    assert.deepEqual(decodeControl(frame), {
      type: FrameType.PeerAdded,
      seq: 0x01020304,
      peer: peer(3),
    });
    assert.deepEqual(decodeControl(encodePeerEvent(FrameType.PeerRemoved, 0xffffffff, peer(9))), {
      type: FrameType.PeerRemoved,
      seq: 0xffffffff,
      peer: peer(9),
    });
    assert.deepEqual(encodeAck(258), bytes(0x14, 0, 0, 1, 2));
    assert.deepEqual(decodeControl(bytes(0x14, 0x80, 0, 0, 1)), {
      type: FrameType.Ack,
      seq: 0x80000001,
    });
    expectFrameError(() => decodeControl(bytes(0x01, 0, 1, 1)), "unexpected_type");
  });

  test("PEER_LIST comes in chunks sharing a seq, the last one flagged", () => {
    const peers = Array.from({ length: PEER_LIST_CHUNK * 2 + 5 }, (_, i) => peer(i));
    const chunks = encodePeerList(42, peers);
    assert.equal(chunks.length, 3);
    const decoded = chunks.map((chunk) => decodeControl(chunk));
    const lasts = decoded.map((m) => m.type === FrameType.PeerList && m.last);
    assert.deepEqual(lasts, [false, false, true]);
    const all = decoded.flatMap((m) => (m.type === FrameType.PeerList ? m.peers : []));
    assert.deepEqual(all, peers);
    assert.ok(decoded.every((m) => m.type === FrameType.PeerList && m.seq === 42));
    const empty = encodePeerList(1, []);
    assert.deepEqual(empty, [bytes(0x13, 0, 0, 0, 1, 1, 0, 0)]);
    expectFrameError(
      () => decodeControl(bytes(0x13, 0, 0, 0, 1, 1, 0, 1)),
      "truncated",
      /PEER_LIST of 1/,
    );
  });
});

describe("WireGuard message check", () => {
  test("types 1-4 with their lengths and zero reserved bytes pass; anything else does not", () => {
    const message = (type: number, length: number) => {
      const m = new Uint8Array(length);
      m[0] = type;
      return m;
    };
    assert.ok(isWellFormedMessage(message(1, 148)));
    assert.ok(isWellFormedMessage(message(2, 92)));
    assert.ok(isWellFormedMessage(message(3, 64)));
    assert.ok(isWellFormedMessage(message(4, 32)));
    assert.ok(isWellFormedMessage(message(4, 1452)));
    for (const [type, length] of [
      [1, 147],
      [1, 149],
      [2, 93],
      [3, 63],
      [4, 31],
      [5, 64],
      [0, 64],
    ]) {
      assert.equal(
        isWellFormedMessage(message(type, length)),
        false,
        `type ${type} length ${length}`,
      );
    }
    const reserved = message(4, 64);
    reserved[2] = 1;
    assert.equal(isWellFormedMessage(reserved), false);
  });
});
