/**
 * Tunnel frames built and read byte by byte from the layouts in shared/tunnel/frame.ts, without
 * the codec under test, so a test compares the relay's bytes with an independent reading.
 */
import { randomBytes } from "node:crypto";

export const NODE_DATAGRAMS = 0x01;
export const PEER_DATAGRAMS = 0x02;
export const HELLO = 0x10;
export const PEER_ADDED = 0x11;
export const PEER_REMOVED = 0x12;
export const PEER_LIST = 0x13;
export const ACK = 0x14;

/** A WireGuard-shaped datagram: type byte, three zero bytes, random rest. */
export function wireguardMessage(type: 1 | 2 | 3 | 4, size?: number): Uint8Array {
  const sizes = { 1: 148, 2: 92, 3: 64, 4: size ?? 96 };
  const message = new Uint8Array(randomBytes(sizes[type]));
  message.set([type, 0, 0, 0]);
  return message;
}

/** NODE_DATAGRAMS: { u16 length, datagram }+ */
export function nodeFrame(datagrams: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat([Buffer.of(NODE_DATAGRAMS), ...datagrams.map((d) => lengthPrefixed(d))]);
}

/** PEER_DATAGRAMS: { 16B tag, u16 length, datagram }+ */
export function peerFrame(entries: readonly (readonly [Uint8Array, Uint8Array])[]): Uint8Array {
  return Buffer.concat([
    Buffer.of(PEER_DATAGRAMS),
    ...entries.flatMap(([tag, d]) => [Buffer.from(tag), lengthPrefixed(d)]),
  ]);
}

export function readNodeFrame(frame: Uint8Array): Uint8Array[] {
  if (frame[0] !== NODE_DATAGRAMS) throw new Error(`expected NODE_DATAGRAMS, got 0x${frame[0]}`);
  const datagrams: Uint8Array[] = [];
  for (let at = 1; at < frame.length; ) {
    const length = (frame[at] << 8) | frame[at + 1];
    datagrams.push(frame.slice(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return datagrams;
}

export function readPeerFrame(frame: Uint8Array): [Uint8Array, Uint8Array][] {
  if (frame[0] !== PEER_DATAGRAMS) throw new Error(`expected PEER_DATAGRAMS, got 0x${frame[0]}`);
  const entries: [Uint8Array, Uint8Array][] = [];
  for (let at = 1; at < frame.length; ) {
    const length = (frame[at + 16] << 8) | frame[at + 17];
    entries.push([frame.slice(at, at + 16), frame.slice(at + 18, at + 18 + length)]);
    at += 18 + length;
  }
  return entries;
}

/** HELLO: u8 version, 32B server public key */
export function helloFrame(serverPublicKey: Uint8Array, version = 1): Uint8Array {
  return Buffer.concat([Buffer.of(HELLO, version), serverPublicKey]);
}

/** ACK: u32 seq */
export function ackFrame(seq: number): Uint8Array {
  const frame = Buffer.alloc(5);
  frame[0] = ACK;
  frame.writeUInt32BE(seq, 1);
  return frame;
}

export interface PeerEvent {
  readonly type: typeof PEER_ADDED | typeof PEER_REMOVED;
  readonly seq: number;
  readonly publicKey: Uint8Array;
  readonly address: Uint8Array;
  readonly virtualAddress: Uint8Array;
}

/** PEER_ADDED / PEER_REMOVED: u32 seq, 32B key, 16B address, 16B virtual address */
export function readPeerEvent(frame: Uint8Array): PeerEvent {
  const type = frame[0];
  if ((type !== PEER_ADDED && type !== PEER_REMOVED) || frame.length !== 69) {
    throw new Error(
      `expected a 69-byte PEER_ADDED or PEER_REMOVED, got 0x${type} of ${frame.length}`,
    );
  }
  return {
    type,
    seq: Buffer.from(frame).readUInt32BE(1),
    publicKey: frame.slice(5, 37),
    address: frame.slice(37, 53),
    virtualAddress: frame.slice(53, 69),
  };
}

/** PEER_LIST: u32 seq, u8 flags, u16 count, count x 64B entries */
export function readPeerList(frame: Uint8Array): {
  seq: number;
  last: boolean;
  peers: { publicKey: Uint8Array; address: Uint8Array; virtualAddress: Uint8Array }[];
} {
  if (frame[0] !== PEER_LIST) throw new Error(`expected PEER_LIST, got 0x${frame[0]}`);
  const view = Buffer.from(frame);
  const count = view.readUInt16BE(6);
  const peers = [];
  for (let i = 0; i < count; i++) {
    const at = 8 + i * 64;
    peers.push({
      publicKey: frame.slice(at, at + 32),
      address: frame.slice(at + 32, at + 48),
      virtualAddress: frame.slice(at + 48, at + 64),
    });
  }
  return { seq: view.readUInt32BE(1), last: (frame[5] & 1) === 1, peers };
}

/** The 16 bytes of an IPv6 address in text (full or `::`-compressed, optional `[...]:port`). */
export function ipv6Bytes(text: string): Uint8Array {
  const address = text.startsWith("[") ? text.slice(1, text.indexOf("]")) : text;
  const [head, tail] = address.includes("::") ? address.split("::") : [address, undefined];
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const left = groups(head);
  const right = groups(tail);
  const all =
    tail === undefined
      ? left
      : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  if (all.length !== 8) throw new Error(`not an IPv6 address: ${text}`);
  const bytes = Buffer.alloc(16);
  for (const [i, group] of all.entries()) bytes.writeUInt16BE(Number.parseInt(group, 16), i * 2);
  return new Uint8Array(bytes);
}

function lengthPrefixed(datagram: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + datagram.length);
  out.writeUInt16BE(datagram.length, 0);
  out.set(datagram, 2);
  return out;
}
