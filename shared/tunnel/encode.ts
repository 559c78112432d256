/**
 * Frame encoding (layouts in frame.ts). Datagram batches are written into one buffer that the
 * encoder keeps and reuses, so a batch of any size costs no allocation once the buffer has
 * grown; control frames are rare and get fresh buffers.
 */
import type { PeerEntry } from "./decode.ts";
import {
  ACK_SIZE,
  FrameType,
  HELLO_SIZE,
  KEY_SIZE,
  LENGTH_SIZE,
  MAX_DATAGRAM_SIZE,
  MAX_FRAME_SIZE,
  PEER_ENTRY_SIZE,
  PEER_EVENT_SIZE,
  PEER_LIST_CHUNK,
  PEER_LIST_HEADER_SIZE,
  PEER_LIST_LAST,
  TAG_SIZE,
  TYPE_SIZE,
} from "./frame.ts";

/**
 * Builds one datagram batch frame at a time. `finish()` returns a view into the encoder's
 * buffer, valid until the next `add` or `reset`: send or copy it before adding more.
 */
export interface BatchEncoder {
  /**
   * Appends a datagram (and, for PEER_DATAGRAMS, its 16-byte node tag). Returns false, leaving
   * the batch unchanged, when the datagram would push the frame past the size limit: finish and
   * send the batch, then add again.
   */
  add(datagram: Uint8Array, tag?: Uint8Array): boolean;
  /** Datagrams in the current batch. */
  readonly count: number;
  /** Bytes the current batch's frame would take. */
  readonly size: number;
  /** The frame for the current batch, and the encoder starts an empty one. */
  finish(): Uint8Array;
  reset(): void;
}

/** An encoder for NODE_DATAGRAMS (tagged = false) or PEER_DATAGRAMS (tagged = true). */
export function createBatchEncoder(tagged: boolean, limit: number = MAX_FRAME_SIZE): BatchEncoder {
  const type = tagged ? FrameType.PeerDatagrams : FrameType.NodeDatagrams;
  const tagSize = tagged ? TAG_SIZE : 0;
  if (limit > MAX_FRAME_SIZE || limit < TYPE_SIZE + tagSize + LENGTH_SIZE + 1) {
    throw new RangeError(
      `batch limit ${limit} outside ${TYPE_SIZE + tagSize + LENGTH_SIZE + 1}..${MAX_FRAME_SIZE}`,
    );
  }
  let buffer = new Uint8Array(Math.min(limit, 64 * 1024));
  let offset = TYPE_SIZE;
  let count = 0;

  return {
    add(datagram: Uint8Array, tag?: Uint8Array): boolean {
      if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_SIZE) {
        throw new RangeError(
          `datagram of ${datagram.length} bytes outside 1..${MAX_DATAGRAM_SIZE}`,
        );
      }
      if (tagged && tag?.length !== TAG_SIZE) {
        throw new RangeError(`expected ${TAG_SIZE} bytes for tag, got ${tag?.length ?? "none"}`);
      }
      const end = offset + tagSize + LENGTH_SIZE + datagram.length;
      if (end > limit) return false;
      if (end > buffer.length) {
        const grown = new Uint8Array(Math.min(limit, Math.max(end, buffer.length * 2)));
        grown.set(buffer.subarray(0, offset));
        buffer = grown;
      }
      if (tag && tagged) buffer.set(tag, offset);
      buffer[offset + tagSize] = datagram.length >>> 8;
      buffer[offset + tagSize + 1] = datagram.length & 0xff;
      buffer.set(datagram, offset + tagSize + LENGTH_SIZE);
      offset = end;
      count++;
      return true;
    },
    get count() {
      return count;
    },
    get size() {
      return offset;
    },
    finish(): Uint8Array {
      if (count === 0)
        throw new RangeError("finish() on an empty batch: a batch holds at least one datagram");
      buffer[0] = type;
      const frame = buffer.subarray(0, offset);
      offset = TYPE_SIZE;
      count = 0;
      return frame;
    },
    reset(): void {
      offset = TYPE_SIZE;
      count = 0;
    },
  };
}

export function encodeHello(version: number, serverPublicKey: Uint8Array): Uint8Array {
  checkLength(serverPublicKey, KEY_SIZE, "serverPublicKey");
  const frame = new Uint8Array(HELLO_SIZE);
  frame[0] = FrameType.Hello;
  frame[1] = version;
  frame.set(serverPublicKey, 2);
  return frame;
}

export function encodePeerEvent(
  type: typeof FrameType.PeerAdded | typeof FrameType.PeerRemoved,
  seq: number,
  peer: PeerEntry,
): Uint8Array {
  const frame = new Uint8Array(PEER_EVENT_SIZE);
  frame[0] = type;
  writeU32(frame, 1, seq);
  writePeerEntry(frame, 5, peer);
  return frame;
}

/** Encodes a whole peer list as PEER_LIST chunks sharing `seq`; an empty list is one chunk. */
export function encodePeerList(seq: number, peers: readonly PeerEntry[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let start = 0; start === 0 || start < peers.length; start += PEER_LIST_CHUNK) {
    const part = peers.slice(start, start + PEER_LIST_CHUNK);
    const frame = new Uint8Array(PEER_LIST_HEADER_SIZE + part.length * PEER_ENTRY_SIZE);
    frame[0] = FrameType.PeerList;
    writeU32(frame, 1, seq);
    frame[5] = start + PEER_LIST_CHUNK >= peers.length ? PEER_LIST_LAST : 0;
    frame[6] = part.length >>> 8;
    frame[7] = part.length & 0xff;
    part.forEach((peer, i) => {
      writePeerEntry(frame, PEER_LIST_HEADER_SIZE + i * PEER_ENTRY_SIZE, peer);
    });
    chunks.push(frame);
  }
  return chunks;
}

export function encodeAck(seq: number): Uint8Array {
  const frame = new Uint8Array(ACK_SIZE);
  frame[0] = FrameType.Ack;
  writeU32(frame, 1, seq);
  return frame;
}

function writeU32(frame: Uint8Array, offset: number, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`sequence number ${value} outside 0..2^32-1`);
  }
  frame[offset] = value >>> 24;
  frame[offset + 1] = (value >>> 16) & 0xff;
  frame[offset + 2] = (value >>> 8) & 0xff;
  frame[offset + 3] = value & 0xff;
}

function writePeerEntry(frame: Uint8Array, offset: number, peer: PeerEntry): void {
  checkLength(peer.publicKey, KEY_SIZE, "peer.publicKey");
  checkLength(peer.address, TAG_SIZE, "peer.address");
  checkLength(peer.virtualAddress, TAG_SIZE, "peer.virtualAddress");
  frame.set(peer.publicKey, offset);
  frame.set(peer.address, offset + KEY_SIZE);
  frame.set(peer.virtualAddress, offset + KEY_SIZE + TAG_SIZE);
}

function checkLength(bytes: Uint8Array, want: number, field: string): void {
  if (bytes.length !== want)
    throw new RangeError(`expected ${want} bytes for ${field}, got ${bytes.length}`);
}
