/**
 * Affiliate records: what a member tells its cluster about itself, sealed so that the relay
 * stores and fans out opaque bytes.
 *
 * Plaintext (version 1), integers big-endian:
 *   u8  version (RECORD_VERSION)
 *   32B WireGuard public key
 *   16B mesh address
 *   u16 WireGuard listen port (0: none)
 *   u32 expiry, seconds since the epoch: receivers drop the record after it, so a relay that
 *       replays an old record cannot keep a departed member alive
 *   u8  routed prefix count (<= MAX_ROUTED_PREFIXES), each: u8 address size (4 | 16),
 *       u8 prefix length, address bytes
 *   u8  candidate endpoint count (<= MAX_ENDPOINTS), each: u8 address size (4 | 16), address
 *       bytes, u16 port
 *
 * Sealed: 24B nonce | XChaCha20-Poly1305 ciphertext and 16B tag, keyed with the cluster's record
 * key, with the member id of the record's slot as associated data: the relay cannot move a
 * record to another member's slot, and the nonce is random (24 bytes leave no collision worry).
 * The address the relay observed is not in here: the relay adds it beside the blob.
 */
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { IPV4_SIZE, IPV6_SIZE, type Prefix } from "../net/ip.ts";
import { ID_SIZE, memberIdOf, RECORD_KEY_SIZE } from "./cluster.ts";

export const RECORD_VERSION = 1;
export const MAX_ROUTED_PREFIXES = 32;
export const MAX_ENDPOINTS = 16;
export const NONCE_SIZE = 24;
export const TAG_SIZE = 16;
const KEY_SIZE = 32;
const HEADER_SIZE = 1 + KEY_SIZE + IPV6_SIZE + 2 + 4;
/** The largest plaintext a valid record encodes to. */
export const MAX_RECORD_PLAINTEXT_SIZE =
  HEADER_SIZE + 1 + MAX_ROUTED_PREFIXES * (2 + IPV6_SIZE) + 1 + MAX_ENDPOINTS * (1 + IPV6_SIZE + 2);
/** The largest sealed record: what the relay accepts at most. */
export const MAX_SEALED_RECORD_SIZE = NONCE_SIZE + MAX_RECORD_PLAINTEXT_SIZE + TAG_SIZE;
/** The smallest sealed record (no prefixes, no endpoints): anything shorter is not one. */
export const MIN_SEALED_RECORD_SIZE = NONCE_SIZE + HEADER_SIZE + 2 + TAG_SIZE;

export interface RecordEndpoint {
  /** 4 or 16 bytes. */
  readonly address: Uint8Array;
  readonly port: number;
}

export interface AffiliateRecord {
  readonly publicKey: Uint8Array;
  readonly meshAddress: Uint8Array;
  readonly listenPort: number;
  /** Seconds since the epoch. */
  readonly expiresAt: number;
  readonly routedPrefixes: readonly Prefix[];
  readonly endpoints: readonly RecordEndpoint[];
}

/** A record that cannot be encoded or decoded; the message names the field. */
export class RecordError extends Error {
  override readonly name = "RecordError";
}

export function encodeRecord(record: AffiliateRecord): Uint8Array {
  check(
    record.publicKey.length === KEY_SIZE,
    `publicKey has ${record.publicKey.length} bytes, expected ${KEY_SIZE}`,
  );
  check(
    record.meshAddress.length === IPV6_SIZE,
    `meshAddress has ${record.meshAddress.length} bytes, expected ${IPV6_SIZE}`,
  );
  check(isPort(record.listenPort), `listenPort ${record.listenPort} is not 0-65535`);
  check(
    Number.isInteger(record.expiresAt) && record.expiresAt >= 0 && record.expiresAt <= 0xffffffff,
    `expiresAt ${record.expiresAt} is not whole seconds since the epoch`,
  );
  check(
    record.routedPrefixes.length <= MAX_ROUTED_PREFIXES,
    `${record.routedPrefixes.length} routed prefixes, at most ${MAX_ROUTED_PREFIXES}`,
  );
  check(
    record.endpoints.length <= MAX_ENDPOINTS,
    `${record.endpoints.length} endpoints, at most ${MAX_ENDPOINTS}`,
  );
  const out = new Uint8Array(MAX_RECORD_PLAINTEXT_SIZE);
  const view = new DataView(out.buffer);
  let at = 0;
  out[at++] = RECORD_VERSION;
  out.set(record.publicKey, at);
  at += KEY_SIZE;
  out.set(record.meshAddress, at);
  at += IPV6_SIZE;
  view.setUint16(at, record.listenPort);
  at += 2;
  view.setUint32(at, record.expiresAt);
  at += 4;
  out[at++] = record.routedPrefixes.length;
  for (const prefix of record.routedPrefixes) {
    const size = checkAddress(prefix.address, "routed prefix");
    check(
      Number.isInteger(prefix.bits) && prefix.bits >= 0 && prefix.bits <= size * 8,
      `routed prefix length ${prefix.bits} is not 0-${size * 8}`,
    );
    out[at++] = size;
    out[at++] = prefix.bits;
    out.set(prefix.address, at);
    at += size;
  }
  out[at++] = record.endpoints.length;
  for (const endpoint of record.endpoints) {
    const size = checkAddress(endpoint.address, "endpoint");
    check(
      isPort(endpoint.port) && endpoint.port !== 0,
      `endpoint port ${endpoint.port} is not 1-65535`,
    );
    out[at++] = size;
    out.set(endpoint.address, at);
    at += size;
    view.setUint16(at, endpoint.port);
    at += 2;
  }
  return out.slice(0, at);
}

export function decodeRecord(bytes: Uint8Array): AffiliateRecord {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const need = (n: number, what: string): void => {
    if (at + n > bytes.length) throw new RecordError(`record ends inside ${what} at byte ${at}`);
  };
  need(HEADER_SIZE, "the header");
  if (bytes[0] !== RECORD_VERSION) {
    throw new RecordError(`record version ${bytes[0]}, this member reads ${RECORD_VERSION}`);
  }
  at = 1;
  const publicKey = bytes.slice(at, at + KEY_SIZE);
  at += KEY_SIZE;
  const meshAddress = bytes.slice(at, at + IPV6_SIZE);
  at += IPV6_SIZE;
  const listenPort = view.getUint16(at);
  at += 2;
  const expiresAt = view.getUint32(at);
  at += 4;
  need(1, "the prefix count");
  const prefixCount = bytes[at++];
  if (prefixCount > MAX_ROUTED_PREFIXES) {
    throw new RecordError(`${prefixCount} routed prefixes, at most ${MAX_ROUTED_PREFIXES}`);
  }
  const routedPrefixes: Prefix[] = [];
  for (let i = 0; i < prefixCount; i++) {
    need(2, "a routed prefix");
    const size = readSize(bytes[at++], "routed prefix");
    const bits = bytes[at++];
    if (bits > size * 8) throw new RecordError(`routed prefix length ${bits} is over ${size * 8}`);
    need(size, "a routed prefix");
    routedPrefixes.push({ address: bytes.slice(at, at + size), bits });
    at += size;
  }
  need(1, "the endpoint count");
  const endpointCount = bytes[at++];
  if (endpointCount > MAX_ENDPOINTS) {
    throw new RecordError(`${endpointCount} endpoints, at most ${MAX_ENDPOINTS}`);
  }
  const endpoints: RecordEndpoint[] = [];
  for (let i = 0; i < endpointCount; i++) {
    need(1, "an endpoint");
    const size = readSize(bytes[at++], "endpoint");
    need(size + 2, "an endpoint");
    const address = bytes.slice(at, at + size);
    at += size;
    const port = view.getUint16(at);
    at += 2;
    if (port === 0) throw new RecordError("endpoint port 0");
    endpoints.push({ address, port });
  }
  if (at !== bytes.length) throw new RecordError(`${bytes.length - at} bytes after the record`);
  return { publicKey, meshAddress, listenPort, expiresAt, routedPrefixes, endpoints };
}

/** Encodes and seals `record` for its own member slot; `nonce` only for known-answer tests. */
export function sealRecord(
  key: Uint8Array,
  record: AffiliateRecord,
  nonce: Uint8Array = randomBytes(NONCE_SIZE),
): Uint8Array {
  checkKey(key);
  if (nonce.length !== NONCE_SIZE) {
    throw new RangeError(`expected ${NONCE_SIZE} bytes for nonce, got ${nonce.length}`);
  }
  const sealed = xchacha20poly1305(key, nonce, memberIdOf(record.publicKey)).encrypt(
    encodeRecord(record),
  );
  const out = new Uint8Array(NONCE_SIZE + sealed.length);
  out.set(nonce);
  out.set(sealed, NONCE_SIZE);
  return out;
}

/**
 * Opens a sealed record found in slot `memberId`. Throws RecordError when it was not sealed with
 * `key` for that slot (another cluster's token, tampering, a record moved between slots) or does
 * not decode; a record whose key does not hash to its slot is refused too.
 */
export function openRecord(
  key: Uint8Array,
  memberId: Uint8Array,
  sealed: Uint8Array,
): AffiliateRecord {
  checkKey(key);
  if (memberId.length !== ID_SIZE) {
    throw new RangeError(`expected ${ID_SIZE} bytes for memberId, got ${memberId.length}`);
  }
  if (sealed.length < MIN_SEALED_RECORD_SIZE || sealed.length > MAX_SEALED_RECORD_SIZE) {
    throw new RecordError(
      `sealed record of ${sealed.length} bytes is outside ${MIN_SEALED_RECORD_SIZE}-${MAX_SEALED_RECORD_SIZE}`,
    );
  }
  let plaintext: Uint8Array;
  try {
    plaintext = xchacha20poly1305(key, sealed.subarray(0, NONCE_SIZE), memberId).decrypt(
      sealed.subarray(NONCE_SIZE),
    );
  } catch (cause) {
    throw new RecordError("record does not authenticate with this cluster's key", { cause });
  }
  const record = decodeRecord(plaintext);
  const owner = memberIdOf(record.publicKey);
  for (let i = 0; i < ID_SIZE; i++) {
    if (owner[i] !== memberId[i])
      throw new RecordError("record's public key does not own its slot");
  }
  return record;
}

function checkKey(key: Uint8Array): void {
  if (key.length !== RECORD_KEY_SIZE) {
    throw new RangeError(`expected ${RECORD_KEY_SIZE} bytes for record key, got ${key.length}`);
  }
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new RecordError(message);
}

function checkAddress(address: Uint8Array, what: string): number {
  check(
    address.length === IPV4_SIZE || address.length === IPV6_SIZE,
    `${what} address has ${address.length} bytes, expected 4 or 16`,
  );
  return address.length;
}

function readSize(size: number, what: string): number {
  if (size !== IPV4_SIZE && size !== IPV6_SIZE) {
    throw new RecordError(`${what} address size ${size}, expected 4 or 16`);
  }
  return size;
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}
