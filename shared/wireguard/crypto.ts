/**
 * The primitives WireGuard needs, behind one interface so each runtime can supply its fastest
 * implementation (node:crypto in sidecar/wireguard/crypto-node.ts), plus a pure @noble
 * implementation that runs anywhere.
 *
 * Per-packet work goes through `TransportAead`, created once per keypair so a provider can
 * import the key once (a KeyObject in Node) and write ciphertext straight into the datagram.
 */
import { chacha20poly1305, xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { blake2s } from "@noble/hashes/blake2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { randomBytes } from "@noble/hashes/utils.js";

export const KEY_SIZE = 32;
export const TAG_SIZE = 16;

/** An X25519 key pair; `dh` returns null when the result is all zero (a small-order point). */
export interface DhKeyPair {
  readonly publicKey: Uint8Array;
  dh(peerPublicKey: Uint8Array): Uint8Array | null;
}

/** ChaCha20-Poly1305 with one key and 64-bit counter nonces (4 zero bytes, counter LE). */
export interface TransportAead {
  /**
   * Encrypts `plaintext` followed by `padding` zero bytes into `out` at `offset`, appending the
   * 16-byte tag. Returns the bytes written.
   */
  seal(
    counter: number,
    plaintext: Uint8Array,
    padding: number,
    out: Uint8Array,
    offset: number,
  ): number;
  /** Authenticates and decrypts ciphertext-with-tag; null when authentication fails. */
  open(counter: number, ciphertext: Uint8Array): Uint8Array | null;
}

export interface CryptoProvider {
  /** A fresh random key pair (handshake ephemerals). */
  generateKeyPair(): DhKeyPair;
  /** The key pair of a 32-byte private key (X25519 clamps it). */
  importPrivateKey(privateKey: Uint8Array): DhKeyPair;
  /** BLAKE2s-256 of the concatenation of `parts`. */
  hash(...parts: Uint8Array[]): Uint8Array;
  /** HMAC-BLAKE2s-256. */
  hmac(key: Uint8Array, data: Uint8Array): Uint8Array;
  /**
   * WireGuard's KDF_n (HKDF with HMAC-BLAKE2s, empty info): the first `count` 32-byte outputs
   * derived from chaining key `key` and `input`.
   */
  kdf(key: Uint8Array, input: Uint8Array, count: 1 | 2 | 3): Uint8Array[];
  /** Keyed BLAKE2s with a 16-byte output (MAC1, MAC2, cookies). */
  mac(key: Uint8Array, data: Uint8Array): Uint8Array;
  aeadSeal(key: Uint8Array, counter: number, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  aeadOpen(
    key: Uint8Array,
    counter: number,
    ciphertext: Uint8Array,
    aad: Uint8Array,
  ): Uint8Array | null;
  /** XChaCha20-Poly1305 with a 24-byte nonce (cookie replies). */
  xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array;
  xaeadOpen(
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    aad: Uint8Array,
  ): Uint8Array | null;
  createTransportAead(key: Uint8Array): TransportAead;
  randomBytes(length: number): Uint8Array;
}

/** Writes the 12-byte ChaCha20-Poly1305 nonce for `counter` (exact below 2^53). */
export function writeCounterNonce(nonce: Uint8Array, counter: number): void {
  const low = counter >>> 0;
  const high = (counter - low) / 0x1_0000_0000;
  nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
  nonce[4] = low;
  nonce[5] = low >>> 8;
  nonce[6] = low >>> 16;
  nonce[7] = low >>> 24;
  nonce[8] = high;
  nonce[9] = high >>> 8;
  nonce[10] = high >>> 16;
  nonce[11] = high >>> 24;
}

export function checkKey(key: Uint8Array, field: string): void {
  if (key.length !== KEY_SIZE) {
    throw new RangeError(`expected ${KEY_SIZE} bytes for ${field}, got ${key.length}`);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function nobleKeyPair(privateKey: Uint8Array): DhKeyPair {
  const secret = privateKey.slice();
  return {
    publicKey: x25519.getPublicKey(secret),
    dh(peerPublicKey) {
      try {
        return x25519.getSharedSecret(secret, peerPublicKey);
      } catch {
        // noble refuses an all-zero shared secret, which is exactly what the caller must reject.
        return null;
      }
    },
  };
}

function counterNonce(counter: number): Uint8Array {
  const nonce = new Uint8Array(12);
  writeCounterNonce(nonce, counter);
  return nonce;
}

function nobleOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array | undefined,
  cipher: typeof chacha20poly1305,
): Uint8Array | null {
  if (ciphertext.length < TAG_SIZE) return null;
  try {
    return cipher(key, nonce, aad).decrypt(ciphertext);
  } catch {
    return null;
  }
}

/** The portable provider: @noble only. Correct everywhere, about a third of Node's speed. */
export function createNobleCryptoProvider(): CryptoProvider {
  const provider: CryptoProvider = {
    generateKeyPair: () => nobleKeyPair(x25519.utils.randomSecretKey()),
    importPrivateKey(privateKey) {
      checkKey(privateKey, "privateKey");
      return nobleKeyPair(privateKey);
    },
    hash: (...parts) => blake2s(concat(parts)),
    hmac: (key, data) => hmac(blake2s, key, data),
    kdf(key, input, count) {
      const prk = hmac(blake2s, key, input);
      const outputs: Uint8Array[] = [];
      let previous = new Uint8Array(0);
      for (let i = 1; i <= count; i++) {
        previous = hmac(blake2s, prk, concat([previous, Uint8Array.of(i)]));
        outputs.push(previous);
      }
      return outputs;
    },
    mac: (key, data) => blake2s(data, { key, dkLen: 16 }),
    aeadSeal: (key, counter, plaintext, aad) =>
      chacha20poly1305(key, counterNonce(counter), aad).encrypt(plaintext),
    aeadOpen: (key, counter, ciphertext, aad) =>
      nobleOpen(key, counterNonce(counter), ciphertext, aad, chacha20poly1305),
    xaeadSeal: (key, nonce, plaintext, aad) =>
      xchacha20poly1305(key, nonce, aad).encrypt(plaintext),
    xaeadOpen: (key, nonce, ciphertext, aad) =>
      nobleOpen(key, nonce, ciphertext, aad, xchacha20poly1305),
    createTransportAead(key) {
      checkKey(key, "transport key");
      const secret = key.slice();
      const nonce = new Uint8Array(12);
      return {
        seal(counter, plaintext, padding, out, offset) {
          writeCounterNonce(nonce, counter);
          const padded = new Uint8Array(plaintext.length + padding);
          padded.set(plaintext);
          const sealed = chacha20poly1305(secret, nonce).encrypt(padded);
          out.set(sealed, offset);
          return sealed.length;
        },
        open(counter, ciphertext) {
          writeCounterNonce(nonce, counter);
          return nobleOpen(secret, nonce, ciphertext, undefined, chacha20poly1305);
        },
      };
    },
    randomBytes: (length) => randomBytes(length),
  };
  return provider;
}
