/**
 * The Node crypto provider: node:crypto where OpenSSL is fast (ChaCha20-Poly1305, X25519 with
 * KeyObjects, BLAKE2s-256, HMAC-BLAKE2s and HKDF, which with `blake2s256` and an empty info is
 * exactly WireGuard's KDF), @noble where Node has no primitive (keyed BLAKE2s-128 for
 * MAC1/MAC2/cookies, XChaCha20-Poly1305 for cookie replies).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import { x25519 } from "@noble/curves/ed25519.js";
import {
  type CryptoProvider,
  checkKey,
  createNobleCryptoProvider,
  type DhKeyPair,
  TAG_SIZE,
  type TransportAead,
  writeCounterNonce,
} from "../../shared/wireguard/crypto.ts";

const CIPHER = "chacha20-poly1305";
const AEAD_OPTIONS = { authTagLength: TAG_SIZE } as const;
const NO_INFO = new Uint8Array(0);
/** Padding source: a transport plaintext is padded by at most 15 bytes. */
const ZEROS = new Uint8Array(16);

const base64url = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url");

function importPublicKey(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: base64url(publicKey) },
    format: "jwk",
  });
}

function keyObjectPair(privateKey: KeyObject, publicKey: Uint8Array): DhKeyPair {
  return {
    publicKey,
    dh(peerPublicKey) {
      try {
        return diffieHellman({ privateKey, publicKey: importPublicKey(peerPublicKey) });
      } catch {
        // OpenSSL fails the derivation exactly when the shared secret would be all zero.
        return null;
      }
    },
  };
}

function counterNonce(counter: number): Buffer {
  const nonce = Buffer.allocUnsafe(12);
  writeCounterNonce(nonce, counter);
  return nonce;
}

function open(
  key: KeyObject,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array | null,
): Uint8Array | null {
  const length = ciphertext.length - TAG_SIZE;
  if (length < 0) return null;
  const decipher = createDecipheriv(CIPHER, key, nonce, AEAD_OPTIONS);
  decipher.setAuthTag(ciphertext.subarray(length));
  if (aad !== null) decipher.setAAD(aad, { plaintextLength: length });
  const plaintext = decipher.update(ciphertext.subarray(0, length));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return plaintext;
}

function createTransportAead(key: Uint8Array): TransportAead {
  checkKey(key, "transport key");
  const secret = createSecretKey(key);
  // createCipheriv copies the nonce, so one buffer per keypair serves every packet.
  const nonce = Buffer.alloc(12);
  return {
    seal(counter, plaintext, padding, out, offset) {
      writeCounterNonce(nonce, counter);
      const cipher = createCipheriv(CIPHER, secret, nonce, AEAD_OPTIONS);
      const body = cipher.update(plaintext);
      out.set(body, offset);
      let written = body.length;
      if (padding > 0) {
        const tail = cipher.update(ZEROS.subarray(0, padding));
        out.set(tail, offset + written);
        written += tail.length;
      }
      cipher.final();
      out.set(cipher.getAuthTag(), offset + written);
      return written + TAG_SIZE;
    },
    open(counter, ciphertext) {
      writeCounterNonce(nonce, counter);
      return open(secret, nonce, ciphertext, null);
    },
  };
}

export function createNodeCryptoProvider(): CryptoProvider {
  const noble = createNobleCryptoProvider();
  return {
    generateKeyPair() {
      const { privateKey, publicKey } = generateKeyPairSync("x25519");
      const raw = Buffer.from(publicKey.export({ format: "jwk" }).x as string, "base64url");
      return keyObjectPair(privateKey, raw);
    },
    importPrivateKey(privateKey) {
      checkKey(privateKey, "privateKey");
      // A JWK private key must carry its public half; static keys are imported rarely, so
      // computing it with noble costs nothing that matters.
      const publicKey = x25519.getPublicKey(privateKey);
      const keyObject = createPrivateKey({
        key: { kty: "OKP", crv: "X25519", d: base64url(privateKey), x: base64url(publicKey) },
        format: "jwk",
      });
      return keyObjectPair(keyObject, publicKey);
    },
    hash(...parts) {
      const hash = createHash("blake2s256");
      for (const part of parts) hash.update(part);
      return hash.digest();
    },
    hmac: (key, data) => createHmac("blake2s256", key).update(data).digest(),
    kdf(key, input, count) {
      const okm = new Uint8Array(hkdfSync("blake2s256", input, key, NO_INFO, 32 * count));
      const outputs: Uint8Array[] = [];
      for (let i = 0; i < count; i++) outputs.push(okm.subarray(32 * i, 32 * (i + 1)));
      return outputs;
    },
    mac: noble.mac,
    aeadSeal(key, counter, plaintext, aad) {
      const cipher = createCipheriv(CIPHER, key, counterNonce(counter), AEAD_OPTIONS);
      cipher.setAAD(aad, { plaintextLength: plaintext.length });
      return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
    },
    aeadOpen: (key, counter, ciphertext, aad) =>
      open(createSecretKey(key), counterNonce(counter), ciphertext, aad),
    xaeadSeal: noble.xaeadSeal,
    xaeadOpen: noble.xaeadOpen,
    createTransportAead,
    randomBytes: (length) => new Uint8Array(randomBytes(length)),
  };
}
