/**
 * The HTTP-only tunnel: the same frames as the WebSocket streams (frame.ts), carried by plain
 * HTTP/1.1 requests for networks whose proxies drop `Upgrade` and hold request bodies. It is
 * gRPC-web, literally, so standard tooling (a gRPC-web client, a proxy's gRPC-web filter, a
 * protobuf decoder) reads it:
 *
 *   package siderolink.edge.v1;
 *   message Frames { repeated bytes frame = 1; }   // each: one tunnel frame (frame.ts)
 *   service HttpTunnel {
 *     rpc Receive(Frames) returns (stream Frames);  // downlink, relay -> client
 *     rpc Send(Frames) returns (Frames);            // uplink, client -> relay, one batch per call
 *   }
 *
 * under a base path per stream kind: `/v1/networks/NETWORK/tunnel` for a node (authenticated by
 * `x-siderolink-ipv6-addr`, as the WebSocket) and `/v1/networks/NETWORK/uplink` for the
 * management server (`Authorization: Bearer ADMIN-SECRET`). gRPC-web has no client streaming, and
 * buffering proxies hold request bodies, so the client's direction is a sequence of unary calls.
 *
 * Receive answers with the session id in SESSION_HEADER (128 random bits); every Send names it
 * and presents the same credential that opened the session, and may number itself
 * (SEQUENCE_HEADER) so that Sends in flight together are switched in order. Receive sends an empty Frames at once
 * (so proxies pass the headers on) and every KEEPALIVE_INTERVAL_MS after; a Send with no frame is
 * the client's ping, and both directions count as activity for the relay's liveness sweep. The
 * relay ends the stream with a gRPC-web trailer frame whose CLOSE_CODE_TRAILER carries the same
 * close code and whose `grpc-message` the same reason a WebSocket would have closed with.
 *
 * Wire layout (gRPC-web, big-endian): each message is `u8 flags, u32 length, length bytes`, flags
 * 0x00 for a message and 0x80 for the trailer block (`name:value\r\n` lines). A Frames message is
 * protobuf: per frame, the byte 0x0a (field 1, length-delimited), a varint length, the frame.
 */
import { MAX_FRAME_SIZE } from "./frame.ts";
import { decodeGrpcMessage, encodeGrpcMessage } from "./grpc-status.ts";

export const HTTP_TUNNEL_SERVICE = "siderolink.edge.v1.HttpTunnel";
/** Paths under a stream's base path (tunnelPath or uplinkPath in relay-api.ts). */
export const RECEIVE_METHOD_PATH = `/${HTTP_TUNNEL_SERVICE}/Receive`;
export const SEND_METHOD_PATH = `/${HTTP_TUNNEL_SERVICE}/Send`;

/** The response header of Receive, and request header of Send, naming the session. */
export const SESSION_HEADER = "x-siderolink-session";
/**
 * Request header of Send numbering a session's Sends from 0, so a client may have up to
 * MAX_SENDS_IN_FLIGHT of them out at once (on separate connections) and the relay still
 * switches their frames in order. A Send without it is switched as it arrives.
 */
export const SEQUENCE_HEADER = "x-siderolink-seq";
export const MAX_SENDS_IN_FLIGHT = 2;
/** Trailer carrying the close code (CloseCode in frame.ts) a WebSocket would have closed with. */
export const CLOSE_CODE_TRAILER = "siderolink-close-code";
/** gRPC-web's binary content type: proxies treat it as an opaque stream. */
export const GRPC_WEB_CONTENT_TYPE = "application/grpc-web+proto";
/** How often Receive sends an empty Frames, and an idle client an empty Send. */
export const KEEPALIVE_INTERVAL_MS = 15_000;

export const ENVELOPE_HEADER_SIZE = 5;
export const ENVELOPE_TRAILER_FLAG = 0x80;
/** The protobuf key of `Frames.frame`: field 1, wire type 2. */
const FRAME_FIELD_KEY = 0x0a;
/** Largest varint a frame length needs (MAX_FRAME_SIZE < 2^21). */
const MAX_VARINT_SIZE = 3;
/** The largest Send body the relay reads: one full frame with its framing. */
export const MAX_SEND_BODY_BYTES = ENVELOPE_HEADER_SIZE + 1 + MAX_VARINT_SIZE + MAX_FRAME_SIZE;

/** An HTTP tunnel body that does not follow the layout above. */
export class HttpTunnelError extends Error {
  override readonly name = "HttpTunnelError";
}

function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : 3;
}

/** Bytes `frames` take as one gRPC-web message. */
export function framesMessageSize(frames: readonly Uint8Array[], count = frames.length): number {
  let size = ENVELOPE_HEADER_SIZE;
  for (let i = 0; i < count; i++) size += 1 + varintSize(frames[i].length) + frames[i].length;
  return size;
}

/** Bytes a frame's field takes beyond the frame: its key and the longest length varint. */
export const FRAME_FIELD_OVERHEAD = 1 + MAX_VARINT_SIZE;

/**
 * Writes one `Frames.frame` field (key, varint length, the frame) into `out` at `offset` and
 * returns the offset after it. The frame may not exceed MAX_FRAME_SIZE.
 */
export function writeFrameField(out: Uint8Array, offset: number, frame: Uint8Array): number {
  if (frame.length > MAX_FRAME_SIZE)
    throw new RangeError(`frame of ${frame.length} bytes is over ${MAX_FRAME_SIZE}`);
  out[offset++] = FRAME_FIELD_KEY;
  let length = frame.length;
  while (length >= 0x80) {
    out[offset++] = (length & 0x7f) | 0x80;
    length >>>= 7;
  }
  out[offset++] = length;
  out.set(frame, offset);
  return offset + frame.length;
}

/**
 * Writes the first `count` of `frames` as one gRPC-web message into `out` at `offset` (which must
 * hold framesMessageSize bytes) and returns the offset after it.
 */
export function writeFramesMessage(
  out: Uint8Array,
  offset: number,
  frames: readonly Uint8Array[],
  count = frames.length,
): number {
  const start = offset;
  offset += ENVELOPE_HEADER_SIZE;
  for (let i = 0; i < count; i++) offset = writeFrameField(out, offset, frames[i]);
  writeEnvelopeHeader(out, start, 0, offset - start - ENVELOPE_HEADER_SIZE);
  return offset;
}

/** The first `count` of `frames` as one new gRPC-web message. */
export function encodeFramesMessage(
  frames: readonly Uint8Array[],
  count = frames.length,
): Uint8Array {
  const out = new Uint8Array(framesMessageSize(frames, count));
  writeFramesMessage(out, 0, frames, count);
  return out;
}

/** An empty Frames message: the keepalive, and the client's ping. */
export const EMPTY_FRAMES_MESSAGE: Uint8Array = new Uint8Array(ENVELOPE_HEADER_SIZE);

/**
 * Reads the frames of one Frames message body (the bytes after its envelope header) into
 * `frames` as views, and returns how many.
 */
export function decodeFramesBody(body: Uint8Array, frames: Uint8Array[]): number {
  let count = 0;
  let offset = 0;
  while (offset < body.length) {
    if (body[offset] !== FRAME_FIELD_KEY) {
      throw new HttpTunnelError(
        `malformed Frames message: byte ${offset} is 0x${body[offset].toString(16).padStart(2, "0")}, expected field 1 (0x0a)`,
      );
    }
    offset++;
    let length = 0;
    let shift = 0;
    for (;;) {
      if (offset >= body.length || shift > 14)
        throw new HttpTunnelError("malformed Frames message: bad length varint");
      const byte = body[offset++];
      length |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
      shift += 7;
    }
    if (length > body.length - offset) {
      throw new HttpTunnelError(
        `malformed Frames message: frame ${count} claims ${length} bytes but ${body.length - offset} remain`,
      );
    }
    frames[count++] = body.subarray(offset, offset + length);
    offset += length;
  }
  return count;
}

/**
 * The frames of a unary request body: exactly one uncompressed message, nothing after it. Views
 * go into `frames`; returns how many.
 */
export function decodeFramesRequest(body: Uint8Array, frames: Uint8Array[]): number {
  if (body.length < ENVELOPE_HEADER_SIZE)
    throw new HttpTunnelError(`request body of ${body.length} bytes holds no gRPC-web message`);
  if (body[0] !== 0)
    throw new HttpTunnelError(`message flags 0x${body[0].toString(16)}: expected 0 (uncompressed)`);
  const length = readU32(body, 1);
  if (length !== body.length - ENVELOPE_HEADER_SIZE) {
    throw new HttpTunnelError(
      `message claims ${length} bytes but the body holds ${body.length - ENVELOPE_HEADER_SIZE}: send exactly one message`,
    );
  }
  return decodeFramesBody(body.subarray(ENVELOPE_HEADER_SIZE), frames);
}

/** A trailer block: grpc-status, grpc-message and (when set) the close code. */
export function encodeTrailer(status: number, message: string, closeCode?: number): Uint8Array {
  let text = `grpc-status:${status}\r\ngrpc-message:${encodeGrpcMessage(message)}\r\n`;
  if (closeCode !== undefined) text += `${CLOSE_CODE_TRAILER}:${closeCode}\r\n`;
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(ENVELOPE_HEADER_SIZE + body.length);
  writeEnvelopeHeader(out, 0, ENVELOPE_TRAILER_FLAG, body.length);
  out.set(body, ENVELOPE_HEADER_SIZE);
  return out;
}

/** The fields of a trailer block's body, names lower-cased, grpc-message decoded. */
export function parseTrailer(body: Uint8Array): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of new TextDecoder().decode(body).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    fields.set(name, name === "grpc-message" ? decodeGrpcMessage(value) : value);
  }
  return fields;
}

export function writeEnvelopeHeader(
  out: Uint8Array,
  offset: number,
  flags: number,
  length: number,
): void {
  out[offset] = flags;
  out[offset + 1] = length >>> 24;
  out[offset + 2] = (length >>> 16) & 0xff;
  out[offset + 3] = (length >>> 8) & 0xff;
  out[offset + 4] = length & 0xff;
}

export function readU32(bytes: Uint8Array, offset: number): number {
  return (
    ((bytes[offset] << 24) >>> 0) +
    (bytes[offset + 1] << 16) +
    (bytes[offset + 2] << 8) +
    bytes[offset + 3]
  );
}

/**
 * Splits a response body arriving in chunks into gRPC-web messages. `push` each chunk; the
 * callback gets each whole message's flags and body (a view valid during the call). A message
 * over `maxMessageBytes` is an error before it is buffered.
 */
export interface EnvelopeReader {
  push(chunk: Uint8Array): void;
  /** Bytes of an unfinished message held. */
  readonly pending: number;
}

export function createEnvelopeReader(
  onMessage: (flags: number, body: Uint8Array) => void,
  maxMessageBytes: number = MAX_SEND_BODY_BYTES,
): EnvelopeReader {
  let buffer = new Uint8Array(64 * 1024);
  let length = 0;
  return {
    get pending() {
      return length;
    },
    push(chunk) {
      let input = chunk;
      // Whole messages straight from the chunk when nothing is held: no copy.
      if (length === 0) {
        let offset = 0;
        while (input.length - offset >= ENVELOPE_HEADER_SIZE) {
          const size = readU32(input, offset + 1);
          if (size > maxMessageBytes)
            throw new HttpTunnelError(`message of ${size} bytes is over ${maxMessageBytes}`);
          if (input.length - offset - ENVELOPE_HEADER_SIZE < size) break;
          const start = offset + ENVELOPE_HEADER_SIZE;
          onMessage(input[offset], input.subarray(start, start + size));
          offset = start + size;
        }
        input = input.subarray(offset);
        if (input.length === 0) return;
      }
      if (length + input.length > buffer.length) {
        const grown = new Uint8Array(Math.max(buffer.length * 2, length + input.length));
        grown.set(buffer.subarray(0, length));
        buffer = grown;
      }
      buffer.set(input, length);
      length += input.length;
      let offset = 0;
      while (length - offset >= ENVELOPE_HEADER_SIZE) {
        const size = readU32(buffer, offset + 1);
        if (size > maxMessageBytes)
          throw new HttpTunnelError(`message of ${size} bytes is over ${maxMessageBytes}`);
        if (length - offset - ENVELOPE_HEADER_SIZE < size) break;
        const start = offset + ENVELOPE_HEADER_SIZE;
        onMessage(buffer[offset], buffer.subarray(start, start + size));
        offset = start + size;
      }
      buffer.copyWithin(0, offset, length);
      length -= offset;
    },
  };
}
