/**
 * Building blocks of WireGuard's Noise_IKpsk2 handshake: the construction and identifier
 * strings, the derived initial chaining key and hash, and the mix operations.
 */
import type { CryptoProvider } from "./crypto.ts";

const utf8 = new TextEncoder();
export const CONSTRUCTION = utf8.encode("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s");
export const IDENTIFIER = utf8.encode("WireGuard v1 zx2c4 Jason@zx2c4.com");
export const LABEL_MAC1 = utf8.encode("mac1----");
export const LABEL_COOKIE = utf8.encode("cookie--");

/** C = HASH(CONSTRUCTION); H = HASH(C || IDENTIFIER). Both start every handshake. */
export function initialChainKeyAndHash(crypto: CryptoProvider): {
  chainKey: Uint8Array;
  hash: Uint8Array;
} {
  const chainKey = crypto.hash(CONSTRUCTION);
  return { chainKey, hash: crypto.hash(chainKey, IDENTIFIER) };
}

/** H = HASH(H || data). */
export function mixHash(crypto: CryptoProvider, hash: Uint8Array, data: Uint8Array): Uint8Array {
  return crypto.hash(hash, data);
}

/** C = KDF1(C, input). */
export function mixKey(
  crypto: CryptoProvider,
  chainKey: Uint8Array,
  input: Uint8Array,
): Uint8Array {
  return crypto.kdf(chainKey, input, 1)[0];
}

export function isZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i];
  return acc === 0;
}

/** Compares without an early exit, so timing does not reveal where MACs differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let acc = 0;
  for (let i = 0; i < a.length; i++) acc |= a[i] ^ b[i];
  return acc === 0;
}

export function readUint32LE(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset] |
      (bytes[offset + 1] << 8) |
      (bytes[offset + 2] << 16) |
      (bytes[offset + 3] << 24)) >>>
    0
  );
}

export function writeUint32LE(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value;
  bytes[offset + 1] = value >>> 8;
  bytes[offset + 2] = value >>> 16;
  bytes[offset + 3] = value >>> 24;
}
