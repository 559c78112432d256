/**
 * What a cluster token gives a member, and what the relay sees of it.
 *
 * - Cluster id: hex SHA-256 of the token, as WgLAN's discovery service names a cluster. The
 *   relay keys records by it and never sees the token. It is a bearer capability on the relay:
 *   whoever knows it may publish and listen, so it travels only in request paths to the relay.
 * - Record key: HKDF-SHA256 of the token (no salt, info RECORD_KEY_INFO), 32 bytes, the AEAD key
 *   of affiliate records (record.ts). The relay, knowing only the id, can neither read nor forge
 *   a record.
 * - Member id: hex SHA-256 of a member's WireGuard public key: the slot of its record and its
 *   address for relayed datagrams. A hash, so the relay's view of a cluster holds no keys.
 */
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";

export const RECORD_KEY_INFO = "siderolink-edge mesh record v1";
export const RECORD_KEY_SIZE = 32;
/** Member and cluster ids are SHA-256 digests. */
export const ID_SIZE = 32;
/** A token shorter than this is guessable; WgLAN uses the Kubernetes cluster token (32+ chars). */
export const MIN_CLUSTER_TOKEN_LENGTH = 16;

const utf8 = new TextEncoder();
const HEX_ID = /^[0-9a-f]{64}$/;

export interface ClusterSecrets {
  /** Hex SHA-256 of the token. */
  readonly clusterId: string;
  readonly recordKey: Uint8Array;
}

/** The id and record key of a cluster token (surrounding whitespace is not part of it). */
export function clusterSecrets(token: string): ClusterSecrets {
  const trimmed = token.trim();
  if (trimmed.length < MIN_CLUSTER_TOKEN_LENGTH) {
    throw new RangeError(
      `cluster token has ${trimmed.length} characters; use at least ${MIN_CLUSTER_TOKEN_LENGTH} (e.g. \`openssl rand -base64 32\`)`,
    );
  }
  const ikm = utf8.encode(trimmed);
  return {
    clusterId: bytesToHex(sha256(ikm)),
    recordKey: hkdf(sha256, ikm, undefined, utf8.encode(RECORD_KEY_INFO), RECORD_KEY_SIZE),
  };
}

/** The 32-byte member id of a public key. */
export function memberIdOf(publicKey: Uint8Array): Uint8Array {
  return sha256(publicKey);
}

/** Whether `text` is an id as the relay's routes take it: 64 lowercase hex digits. */
export function isHexId(text: string): boolean {
  return HEX_ID.test(text);
}

export function formatId(id: Uint8Array): string {
  return bytesToHex(id);
}

export function parseId(text: string, field: string): Uint8Array {
  if (!isHexId(text)) {
    throw new RangeError(
      `${field} must be 64 lowercase hex digits (a SHA-256), got ${JSON.stringify(text.slice(0, 80))}`,
    );
  }
  return hexToBytes(text);
}
