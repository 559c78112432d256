/**
 * The bytes of a `CreateStream` body in either direction, encoded and decoded by hand so that a
 * tunnel carries datagrams without a protobuf object or a copy per datagram.
 *
 * Each gRPC message (gRPC over HTTP/2, "Length-Prefixed-Message") is
 *
 *   flags u8 (0: not compressed) | length u32 big-endian | PeerPacket protobuf (length bytes)
 *
 * and PeerPacket is `{ bytes Data = 2; }`: tag 0x12 (field 2, wire type 2), varint length, the
 * datagram. One datagram per message, as siderolink's wggrpc reads it; many messages may share
 * one HTTP/2 DATA write, which is where the speed comes from.
 */

/** gRPC message prefix: compressed flag and big-endian length. */
export const GRPC_MESSAGE_HEADER_BYTES = 5;
/** PeerPacket field 2 (Data), wire type 2 (length-delimited). */
const DATA_TAG = 0x12;
/** Largest datagram a PeerPacket may carry: a UDP payload (65,535 - 8 - 40 for IPv6). */
export const MAX_PEER_PACKET_DATA = 65_487;
/** Largest gRPC message this reader takes: a full datagram plus its tag and length. */
export const MAX_PEER_PACKET_MESSAGE = MAX_PEER_PACKET_DATA + 4;

/** Bytes `encodePeerPackets` writes for a datagram of `length` bytes. */
export function encodedPeerPacketBytes(length: number): number {
  return GRPC_MESSAGE_HEADER_BYTES + 1 + varintBytes(length) + length;
}

/**
 * Writes the first `count` datagrams as one gRPC message each into `out` from `offset`;
 * returns the offset after the last. `out` must hold the sum of `encodedPeerPacketBytes`.
 */
export function encodePeerPackets(
  datagrams: readonly Uint8Array[],
  count: number,
  out: Uint8Array,
  offset = 0,
): number {
  let at = offset;
  for (let i = 0; i < count; i++) {
    const data = datagrams[i];
    const body = 1 + varintBytes(data.length) + data.length;
    out[at] = 0;
    out[at + 1] = body >>> 24;
    out[at + 2] = (body >>> 16) & 0xff;
    out[at + 3] = (body >>> 8) & 0xff;
    out[at + 4] = body & 0xff;
    out[at + 5] = DATA_TAG;
    at += 6;
    for (let n = data.length; ; n >>>= 7) {
      if (n < 0x80) {
        out[at++] = n;
        break;
      }
      out[at++] = (n & 0x7f) | 0x80;
    }
    out.set(data, at);
    at += data.length;
  }
  return at;
}

function varintBytes(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : 3;
}

/** Why a stream's bytes are no sequence of PeerPacket messages; the stream must end. */
export class PeerPacketError extends Error {
  readonly tooBig: boolean;

  constructor(message: string, tooBig = false) {
    super(message);
    this.name = "PeerPacketError";
    this.tooBig = tooBig;
  }
}

/**
 * Splits a `CreateStream` body, as it arrives in chunks, into datagrams. `push` hands every
 * datagram of the chunk to `deliver` in one call (an array exactly `count` long of views into
 * the chunk, valid during the call);
 * only a message cut by a chunk's end is copied, into a buffer kept for the next chunk. It
 * throws PeerPacketError on bytes that are no PeerPacket message. Empty PeerPackets (no Data)
 * carry nothing and are skipped.
 */
export class PeerPacketReader {
  readonly #deliver: (datagrams: readonly Uint8Array[], count: number) => void;
  readonly #batch: Uint8Array[] = [];
  #pending = new Uint8Array(GRPC_MESSAGE_HEADER_BYTES);
  #pendingLength = 0;

  constructor(deliver: (datagrams: readonly Uint8Array[], count: number) => void) {
    this.#deliver = deliver;
  }

  push(chunk: Uint8Array): void {
    const batch = this.#batch;
    let count = 0;
    let at = 0;
    if (this.#pendingLength > 0) {
      at = this.#fill(chunk, 0, GRPC_MESSAGE_HEADER_BYTES);
      if (this.#pendingLength < GRPC_MESSAGE_HEADER_BYTES) return;
      const end = GRPC_MESSAGE_HEADER_BYTES + messageLength(this.#pending, 0);
      if (this.#pending.length < end) {
        const grown = new Uint8Array(end);
        grown.set(this.#pending.subarray(0, this.#pendingLength));
        this.#pending = grown;
      }
      at = this.#fill(chunk, at, end);
      if (this.#pendingLength < end) return;
      const data = peerPacketData(this.#pending, GRPC_MESSAGE_HEADER_BYTES, end);
      if (data.length > 0) batch[count++] = data;
      this.#pendingLength = 0;
    }
    while (chunk.length - at >= GRPC_MESSAGE_HEADER_BYTES) {
      const end = at + GRPC_MESSAGE_HEADER_BYTES + messageLength(chunk, at);
      if (end > chunk.length) break;
      const data = peerPacketData(chunk, at + GRPC_MESSAGE_HEADER_BYTES, end);
      if (data.length > 0) batch[count++] = data;
      at = end;
    }
    if (count > 0) {
      // Exactly `count` long for the call, and emptied after it so no view outlives it.
      batch.length = count;
      try {
        this.#deliver(batch, count);
      } finally {
        batch.length = 0;
      }
    }
    if (at < chunk.length) {
      // The delivered views are done with, so the buffer can take the cut message's start.
      if (this.#pending.length < chunk.length - at)
        this.#pending = new Uint8Array(chunk.length - at);
      this.#pending.set(chunk.subarray(at));
      this.#pendingLength = chunk.length - at;
    }
  }

  /** Whether a message was cut off when the stream ended. */
  get partial(): boolean {
    return this.#pendingLength > 0;
  }

  /** Copies from chunk[at] until the pending message holds `upTo` bytes; returns the new `at`. */
  #fill(chunk: Uint8Array, at: number, upTo: number): number {
    const take = Math.min(upTo - this.#pendingLength, chunk.length - at);
    if (take <= 0) return at;
    this.#pending.set(chunk.subarray(at, at + take), this.#pendingLength);
    this.#pendingLength += take;
    return at + take;
  }
}

/** The length of the gRPC message whose prefix starts at bytes[at], checked. */
function messageLength(bytes: Uint8Array, at: number): number {
  if (bytes[at] !== 0)
    throw new PeerPacketError(
      `gRPC message flag ${bytes[at]}: compressed or unknown; send PeerPackets uncompressed`,
    );
  const length =
    ((bytes[at + 1] << 24) | (bytes[at + 2] << 16) | (bytes[at + 3] << 8) | bytes[at + 4]) >>> 0;
  if (length > MAX_PEER_PACKET_MESSAGE)
    throw new PeerPacketError(
      `gRPC message of ${length} bytes; a PeerPacket holds at most ${MAX_PEER_PACKET_MESSAGE}`,
      true,
    );
  return length;
}

/** The Data field of the PeerPacket in bytes[start, end); other fields are skipped (proto3). */
function peerPacketData(bytes: Uint8Array, start: number, end: number): Uint8Array {
  let data = bytes.subarray(start, start);
  let at = start;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (at >= end) throw new PeerPacketError("PeerPacket ends inside a varint");
      const byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    throw new PeerPacketError("PeerPacket varint longer than 10 bytes");
  };
  while (at < end) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wireType = key & 7;
    if (field === 0) throw new PeerPacketError("PeerPacket field number 0");
    switch (wireType) {
      case 0:
        varint();
        break;
      case 1:
        at += 8;
        break;
      case 5:
        at += 4;
        break;
      case 2: {
        const length = varint();
        if (length > end - at)
          throw new PeerPacketError(
            `PeerPacket field ${field} of ${length} bytes runs past the message's end`,
          );
        if (field === 2) data = bytes.subarray(at, at + length);
        at += length;
        break;
      }
      default:
        throw new PeerPacketError(`PeerPacket field ${field} with wire type ${wireType}`);
    }
    if (at > end) throw new PeerPacketError("PeerPacket field runs past the message's end");
  }
  return data;
}
