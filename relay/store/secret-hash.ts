/**
 * How the store keeps secrets: as SHA-256 digests, never in clear. Admin secrets and join-token
 * secrets are 32 random bytes each, so a fast unsalted hash is enough (nothing to brute-force,
 * no two equal secrets to correlate), and whoever reads the database or a backup cannot use
 * what it holds. SHA-256 from @noble/hashes rather than WebCrypto: it is synchronous, so the
 * schema migration that hashes old clear rows runs inside the store's synchronous transaction,
 * on node:sqlite and on a Durable Object alike.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";

/** Lower-case hex of SHA-256 over the secret's UTF-8 text: 64 characters. */
export function hashSecret(secret: string): string {
  return bytesToHex(sha256(utf8ToBytes(secret)));
}
