/**
 * Encoding and decoding of mesh frames (layouts in frame.ts). Decoding never copies a datagram:
 * handlers get views valid only during the call.
 */
import {
  DATAGRAM_HEADER_SIZE,
  MAX_MESH_DATAGRAM_SIZE,
  MAX_MESH_FRAME_SIZE,
  MEMBER_ID_SIZE,
  MESH_BATCH_BYTES,
  MESH_TYPE_SIZE,
  MeshFrameType,
  OBSERVED_SIZE,
  RECORD_HEADER_SIZE,
  REMOVED_SIZE,
} from "./frame.ts";
import { MAX_SEALED_RECORD_SIZE, MIN_SEALED_RECORD_SIZE } from "./record.ts";

/** A frame that breaks the rules of frame.ts; `tooBig` says which close code it earns. */
export class MeshFrameError extends Error {
  override readonly name = "MeshFrameError";
  readonly tooBig: boolean;
  constructor(message: string, tooBig = false) {
    super(message);
    this.tooBig = tooBig;
  }
}

export type MeshFrame =
  | { readonly type: typeof MeshFrameType.Publish; readonly record: Uint8Array }
  | {
      readonly type: typeof MeshFrameType.Record;
      readonly member: Uint8Array;
      readonly observed: Uint8Array;
      readonly record: Uint8Array;
    }
  | { readonly type: typeof MeshFrameType.Removed; readonly member: Uint8Array }
  | { readonly type: typeof MeshFrameType.Datagrams; readonly frame: Uint8Array }
  | { readonly type: typeof MeshFrameType.Synced };

/** Reads a frame's type and fixed fields; DATAGRAMS are walked with forEachDatagram. */
export function decodeMeshFrame(frame: Uint8Array): MeshFrame {
  if (frame.length > MAX_MESH_FRAME_SIZE) {
    throw new MeshFrameError(`frame of ${frame.length} bytes, over ${MAX_MESH_FRAME_SIZE}`, true);
  }
  if (frame.length < MESH_TYPE_SIZE) throw new MeshFrameError("empty frame");
  switch (frame[0]) {
    case MeshFrameType.Publish: {
      const record = frame.subarray(MESH_TYPE_SIZE);
      checkRecordSize(record.length);
      return { type: MeshFrameType.Publish, record };
    }
    case MeshFrameType.Record: {
      if (frame.length < RECORD_HEADER_SIZE) throw new MeshFrameError("RECORD frame too short");
      const record = frame.subarray(RECORD_HEADER_SIZE);
      checkRecordSize(record.length);
      return {
        type: MeshFrameType.Record,
        member: frame.subarray(MESH_TYPE_SIZE, MESH_TYPE_SIZE + MEMBER_ID_SIZE),
        observed: frame.subarray(MESH_TYPE_SIZE + MEMBER_ID_SIZE, RECORD_HEADER_SIZE),
        record,
      };
    }
    case MeshFrameType.Removed:
      if (frame.length !== REMOVED_SIZE) {
        throw new MeshFrameError(
          `REMOVED frame of ${frame.length} bytes, expected ${REMOVED_SIZE}`,
        );
      }
      return { type: MeshFrameType.Removed, member: frame.subarray(MESH_TYPE_SIZE) };
    case MeshFrameType.Datagrams:
      return { type: MeshFrameType.Datagrams, frame };
    case MeshFrameType.Synced:
      if (frame.length !== MESH_TYPE_SIZE)
        throw new MeshFrameError("SYNCED frame carries no payload");
      return { type: MeshFrameType.Synced };
    default:
      throw new MeshFrameError(`unknown mesh frame type 0x${frame[0].toString(16)}`);
  }
}

/**
 * Calls `each(member, datagram)` for every datagram of a DATAGRAMS frame (views into `frame`).
 * The whole frame is checked before the first call, so a malformed frame delivers nothing.
 */
export function forEachDatagram(
  frame: Uint8Array,
  each: (member: Uint8Array, datagram: Uint8Array) => void,
): void {
  let at = MESH_TYPE_SIZE;
  if (frame.length === at) throw new MeshFrameError("DATAGRAMS frame holds no datagram");
  while (at < frame.length) {
    if (at + DATAGRAM_HEADER_SIZE > frame.length) {
      throw new MeshFrameError(`DATAGRAMS frame ends inside a datagram header at byte ${at}`);
    }
    const length = (frame[at + MEMBER_ID_SIZE] << 8) | frame[at + MEMBER_ID_SIZE + 1];
    if (length === 0) throw new MeshFrameError(`empty datagram at byte ${at}`);
    at += DATAGRAM_HEADER_SIZE + length;
    if (at > frame.length) throw new MeshFrameError("DATAGRAMS frame ends inside a datagram");
  }
  at = MESH_TYPE_SIZE;
  while (at < frame.length) {
    const member = frame.subarray(at, at + MEMBER_ID_SIZE);
    const length = (frame[at + MEMBER_ID_SIZE] << 8) | frame[at + MEMBER_ID_SIZE + 1];
    at += DATAGRAM_HEADER_SIZE;
    each(member, frame.subarray(at, at + length));
    at += length;
  }
}

export function encodePublish(record: Uint8Array): Uint8Array {
  checkRecordSize(record.length);
  const frame = new Uint8Array(MESH_TYPE_SIZE + record.length);
  frame[0] = MeshFrameType.Publish;
  frame.set(record, MESH_TYPE_SIZE);
  return frame;
}

export function encodeRecordFrame(
  member: Uint8Array,
  observed: Uint8Array,
  record: Uint8Array,
): Uint8Array {
  checkIdSize(member);
  if (observed.length !== OBSERVED_SIZE) {
    throw new RangeError(
      `expected ${OBSERVED_SIZE} bytes for observed address, got ${observed.length}`,
    );
  }
  const frame = new Uint8Array(RECORD_HEADER_SIZE + record.length);
  frame[0] = MeshFrameType.Record;
  frame.set(member, MESH_TYPE_SIZE);
  frame.set(observed, MESH_TYPE_SIZE + MEMBER_ID_SIZE);
  frame.set(record, RECORD_HEADER_SIZE);
  return frame;
}

export function encodeRemoved(member: Uint8Array): Uint8Array {
  checkIdSize(member);
  const frame = new Uint8Array(REMOVED_SIZE);
  frame[0] = MeshFrameType.Removed;
  frame.set(member, MESH_TYPE_SIZE);
  return frame;
}

export const SYNCED_FRAME = Uint8Array.of(MeshFrameType.Synced);

/**
 * Packs tagged datagrams into DATAGRAMS frames in one reused buffer. `add` flushes first when
 * the datagram would not fit; `flush` hands the frame (a view, valid only during the call) to
 * `send`. Datagrams over MAX_MESH_DATAGRAM_SIZE or empty are dropped and counted.
 */
export class DatagramBatcher {
  readonly #buffer = new Uint8Array(MESH_BATCH_BYTES);
  readonly #send: (frame: Uint8Array) => void;
  #length = MESH_TYPE_SIZE;
  dropped = 0;

  constructor(send: (frame: Uint8Array) => void) {
    this.#send = send;
    this.#buffer[0] = MeshFrameType.Datagrams;
  }

  add(member: Uint8Array, datagram: Uint8Array): void {
    const size = DATAGRAM_HEADER_SIZE + datagram.length;
    if (
      datagram.length === 0 ||
      datagram.length > MAX_MESH_DATAGRAM_SIZE ||
      size > MESH_BATCH_BYTES - MESH_TYPE_SIZE
    ) {
      this.dropped++;
      return;
    }
    if (this.#length + size > MESH_BATCH_BYTES) this.flush();
    const buffer = this.#buffer;
    let at = this.#length;
    buffer.set(member.subarray(0, MEMBER_ID_SIZE), at);
    at += MEMBER_ID_SIZE;
    buffer[at++] = datagram.length >> 8;
    buffer[at++] = datagram.length & 0xff;
    buffer.set(datagram, at);
    this.#length = at + datagram.length;
  }

  flush(): void {
    if (this.#length === MESH_TYPE_SIZE) return;
    const frame = this.#buffer.subarray(0, this.#length);
    this.#length = MESH_TYPE_SIZE;
    this.#send(frame);
  }
}

function checkRecordSize(size: number): void {
  if (size > MAX_SEALED_RECORD_SIZE) {
    throw new MeshFrameError(`record of ${size} bytes, over ${MAX_SEALED_RECORD_SIZE}`, true);
  }
  if (size < MIN_SEALED_RECORD_SIZE) {
    throw new MeshFrameError(`record of ${size} bytes, under ${MIN_SEALED_RECORD_SIZE}`);
  }
}

function checkIdSize(member: Uint8Array): void {
  if (member.length !== MEMBER_ID_SIZE) {
    throw new RangeError(`expected ${MEMBER_ID_SIZE} bytes for member id, got ${member.length}`);
  }
}
