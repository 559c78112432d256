/**
 * Frame decoding (layouts in frame.ts). Datagram frames decode into caller-owned arrays of
 * views into the frame, so a batch costs no copies; control frames decode into a closed union.
 * Every length is checked against the bytes present before it is used.
 */
import {
  ACK_SIZE,
  CloseCode,
  FrameType,
  HELLO_SIZE,
  KEY_SIZE,
  LENGTH_SIZE,
  MAX_FRAME_SIZE,
  PEER_ENTRY_SIZE,
  PEER_EVENT_SIZE,
  PEER_LIST_HEADER_SIZE,
  PEER_LIST_LAST,
  TAG_SIZE,
  TYPE_SIZE,
} from "./frame.ts";

export type FrameErrorKind =
  | "too_big"
  | "empty"
  | "unknown_type"
  | "truncated"
  | "trailing_bytes"
  | "empty_datagram"
  | "unexpected_type";

/** A frame that breaks the layout. `closeCode` is what the receiving stream closes with. */
export class FrameError extends Error {
  readonly kind: FrameErrorKind;
  readonly closeCode: CloseCode;
  constructor(kind: FrameErrorKind, message: string) {
    super(message);
    this.name = "FrameError";
    this.kind = kind;
    this.closeCode = kind === "too_big" ? CloseCode.TooBig : CloseCode.Malformed;
  }
}

/** A node as the uplink knows it: WireGuard key, overlay address, tunnel tag. */
export interface PeerEntry {
  /** 32 bytes. */
  readonly publicKey: Uint8Array;
  /** 16 bytes: the node's address in the network prefix. */
  readonly address: Uint8Array;
  /** 16 bytes: the virtual address that tags the node's datagrams. */
  readonly virtualAddress: Uint8Array;
}

export type ControlMessage =
  | {
      readonly type: typeof FrameType.Hello;
      readonly version: number;
      readonly serverPublicKey: Uint8Array;
    }
  | { readonly type: typeof FrameType.PeerAdded; readonly seq: number; readonly peer: PeerEntry }
  | { readonly type: typeof FrameType.PeerRemoved; readonly seq: number; readonly peer: PeerEntry }
  | {
      readonly type: typeof FrameType.PeerList;
      readonly seq: number;
      readonly last: boolean;
      readonly peers: readonly PeerEntry[];
    }
  | { readonly type: typeof FrameType.Ack; readonly seq: number };

const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));

/** Checks the frame's size and type byte and returns the type. */
export function frameType(frame: Uint8Array): FrameType {
  if (frame.length > MAX_FRAME_SIZE) {
    throw new FrameError(
      "too_big",
      `frame too big: ${frame.length} bytes (limit ${MAX_FRAME_SIZE})`,
    );
  }
  if (frame.length < TYPE_SIZE) throw new FrameError("empty", "empty frame");
  const type = frame[0];
  if (!KNOWN_TYPES.has(type)) {
    throw new FrameError(
      "unknown_type",
      `unknown frame type 0x${type.toString(16).padStart(2, "0")}`,
    );
  }
  return type as FrameType;
}

function expectType(frame: Uint8Array, want: FrameType): void {
  const got = frameType(frame);
  if (got !== want) {
    throw new FrameError(
      "unexpected_type",
      `unexpected frame type 0x${got.toString(16).padStart(2, "0")} (expected 0x${want.toString(16).padStart(2, "0")})`,
    );
  }
}

/**
 * Decodes a NODE_DATAGRAMS frame into `datagrams` (views into `frame`, valid as long as it is)
 * and returns their count. `datagrams` is reused across calls: only the first `count` entries
 * belong to this frame.
 */
export function decodeNodeDatagrams(frame: Uint8Array, datagrams: Uint8Array[]): number {
  expectType(frame, FrameType.NodeDatagrams);
  return decodeBatch(frame, 0, undefined, datagrams);
}

/**
 * Decodes a PEER_DATAGRAMS frame: `tags[i]` (16-byte views) is the node of `datagrams[i]`.
 * Returns the count; both arrays are reused like decodeNodeDatagrams's.
 */
export function decodePeerDatagrams(
  frame: Uint8Array,
  tags: Uint8Array[],
  datagrams: Uint8Array[],
): number {
  expectType(frame, FrameType.PeerDatagrams);
  return decodeBatch(frame, TAG_SIZE, tags, datagrams);
}

function decodeBatch(
  frame: Uint8Array,
  tagSize: number,
  tags: Uint8Array[] | undefined,
  datagrams: Uint8Array[],
): number {
  let offset = TYPE_SIZE;
  let count = 0;
  if (frame.length === offset)
    throw new FrameError("truncated", "datagram batch holds no datagram");
  while (offset < frame.length) {
    const headerEnd = offset + tagSize + LENGTH_SIZE;
    if (headerEnd > frame.length) {
      throw new FrameError("truncated", `datagram ${count} header truncated at byte ${offset}`);
    }
    const length = (frame[headerEnd - 2] << 8) | frame[headerEnd - 1];
    if (length === 0) throw new FrameError("empty_datagram", `datagram ${count} is empty`);
    const end = headerEnd + length;
    if (end > frame.length) {
      throw new FrameError(
        "truncated",
        `datagram ${count} claims ${length} bytes but ${frame.length - headerEnd} remain`,
      );
    }
    if (tags) tags[count] = frame.subarray(offset, offset + tagSize);
    datagrams[count] = frame.subarray(headerEnd, end);
    count++;
    offset = end;
  }
  return count;
}

/** Decodes one of the uplink's control frames (HELLO, PEER_*, ACK). */
export function decodeControl(frame: Uint8Array): ControlMessage {
  const type = frameType(frame);
  switch (type) {
    case FrameType.Hello:
      exactSize(frame, HELLO_SIZE, "HELLO");
      return {
        type,
        version: frame[1],
        serverPublicKey: frame.slice(2, 2 + KEY_SIZE),
      };
    case FrameType.PeerAdded:
    case FrameType.PeerRemoved:
      exactSize(
        frame,
        PEER_EVENT_SIZE,
        type === FrameType.PeerAdded ? "PEER_ADDED" : "PEER_REMOVED",
      );
      return { type, seq: readU32(frame, 1), peer: readPeerEntry(frame, 5) };
    case FrameType.PeerList: {
      if (frame.length < PEER_LIST_HEADER_SIZE) {
        throw new FrameError("truncated", `PEER_LIST header truncated: ${frame.length} bytes`);
      }
      const count = (frame[6] << 8) | frame[7];
      exactSize(frame, PEER_LIST_HEADER_SIZE + count * PEER_ENTRY_SIZE, `PEER_LIST of ${count}`);
      const peers: PeerEntry[] = [];
      for (let i = 0; i < count; i++) {
        peers.push(readPeerEntry(frame, PEER_LIST_HEADER_SIZE + i * PEER_ENTRY_SIZE));
      }
      return { type, seq: readU32(frame, 1), last: (frame[5] & PEER_LIST_LAST) !== 0, peers };
    }
    case FrameType.Ack:
      exactSize(frame, ACK_SIZE, "ACK");
      return { type, seq: readU32(frame, 1) };
    case FrameType.NodeDatagrams:
    case FrameType.PeerDatagrams:
      throw new FrameError(
        "unexpected_type",
        `datagram frame 0x0${type} where a control frame belongs`,
      );
  }
}

function exactSize(frame: Uint8Array, size: number, name: string): void {
  if (frame.length < size) {
    throw new FrameError("truncated", `${name} truncated: ${frame.length} bytes, need ${size}`);
  }
  if (frame.length > size) {
    throw new FrameError("trailing_bytes", `${name} has ${frame.length - size} trailing bytes`);
  }
}

function readU32(frame: Uint8Array, offset: number): number {
  return (
    ((frame[offset] << 24) >>> 0) +
    (frame[offset + 1] << 16) +
    (frame[offset + 2] << 8) +
    frame[offset + 3]
  );
}

function readPeerEntry(frame: Uint8Array, offset: number): PeerEntry {
  return {
    publicKey: frame.slice(offset, offset + KEY_SIZE),
    address: frame.slice(offset + KEY_SIZE, offset + KEY_SIZE + TAG_SIZE),
    virtualAddress: frame.slice(offset + KEY_SIZE + TAG_SIZE, offset + PEER_ENTRY_SIZE),
  };
}
