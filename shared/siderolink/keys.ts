import { x25519 } from "@noble/curves/ed25519.js";
import { SideroLinkError } from "./errors.ts";

/** WireGuard keys are X25519 keys: 32 bytes, written as 44 characters of padded base64. */
export const KEY_SIZE = 32;

const BASE64_KEY_LENGTH = 44;
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A new private key, clamped as RFC 7748 section 5 describes, so it reads the same as the output
 * of `wg genkey` (X25519 clamps on every use anyway).
 */
export function generatePrivateKey(): Uint8Array {
  const key = x25519.utils.randomSecretKey();
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

export function publicKey(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(checkKey(privateKey, "private key"));
}

/**
 * X25519(privateKey, peerPublicKey). Throws for a low-order peer key, whose result would be all
 * zeros: a secret anyone can compute.
 */
export function sharedSecret(privateKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  return x25519.getSharedSecret(
    checkKey(privateKey, "private key"),
    checkKey(peerPublicKey, "public key"),
  );
}

/** Standard padded base64, as `wg` prints keys and SideroLink carries them. */
export function formatKey(key: Uint8Array): string {
  checkKey(key, "key");
  return btoa(String.fromCharCode(...key));
}

/**
 * Parses a base64 key: the standard alphabet with '=' padding, the form Go's `wgtypes.ParseKey`
 * reads on SideroLink servers. `field` names the value in errors. The text itself never appears in an error: it
 * may be a private key.
 */
export function parseKey(text: string, field: string): Uint8Array {
  const expected = `expected ${KEY_SIZE} bytes of base64 (${BASE64_KEY_LENGTH} characters, like wg genkey prints)`;
  if (text === "") throw new SideroLinkError("missing", field, `empty; ${expected}`);
  if (!BASE64_TEXT.test(text) || text.length % 4 !== 0) {
    const bad = text.search(/[^A-Za-z0-9+/=]/);
    const why =
      bad >= 0
        ? `unexpected character at position ${bad}`
        : text.length % 4 !== 0
          ? `${text.length} characters is not a multiple of 4 (missing '=' padding?)`
          : "'=' belongs only at the end, at most twice";
    throw new SideroLinkError("invalid", field, `not base64: ${why}; ${expected}`);
  }
  // The checks above leave only text that atob decodes.
  const binary = atob(text);
  if (binary.length !== KEY_SIZE) {
    throw new SideroLinkError(
      "invalid",
      field,
      `expected ${KEY_SIZE} bytes of base64, got ${binary.length}`,
    );
  }
  const key = new Uint8Array(KEY_SIZE);
  for (let i = 0; i < KEY_SIZE; i++) key[i] = binary.charCodeAt(i);
  return key;
}

function checkKey(key: Uint8Array, what: string): Uint8Array {
  if (key.length !== KEY_SIZE) {
    throw new RangeError(`expected ${KEY_SIZE} bytes for the ${what}, got ${key.length}`);
  }
  return key;
}
