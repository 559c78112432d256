/**
 * The Node provider against the @noble provider on random inputs: each is the other's
 * independent implementation (OpenSSL versus pure JavaScript), so agreement on every primitive
 * means neither has a construction error the other lacks.
 */
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { describe, it } from "node:test";
import { createNobleCryptoProvider } from "../../shared/wireguard/crypto.ts";
import { createNodeCryptoProvider } from "../../sidecar/wireguard/crypto-node.ts";

const node = createNodeCryptoProvider();
const noble = createNobleCryptoProvider();
const hex = (bytes: Uint8Array | null): string =>
  bytes === null ? "null" : Buffer.from(bytes).toString("hex");
const random = (length: number): Uint8Array => new Uint8Array(randomBytes(length));
const Rounds = 50;

describe("crypto provider parity (node == noble)", () => {
  it("hash, hmac, kdf and mac", () => {
    for (let i = 0; i < Rounds; i++) {
      const key = random(32);
      const a = random(randomInt(0, 200));
      const b = random(randomInt(0, 200));
      assert.equal(hex(node.hash(a, b)), hex(noble.hash(a, b)));
      assert.equal(hex(node.hmac(key, a)), hex(noble.hmac(key, a)));
      for (const n of [1, 2, 3] as const) {
        assert.deepEqual(node.kdf(key, a, n).map(hex), noble.kdf(key, a, n).map(hex));
      }
      assert.equal(hex(node.mac(key, a)), hex(noble.mac(key, a)));
    }
  });

  it("X25519: same public key and shared secret from the same private key", () => {
    for (let i = 0; i < Rounds; i++) {
      const secret = random(32);
      const viaNode = node.importPrivateKey(secret);
      const viaNoble = noble.importPrivateKey(secret);
      assert.equal(hex(viaNode.publicKey), hex(viaNoble.publicKey));
      const other = i % 2 === 0 ? node.generateKeyPair() : noble.generateKeyPair();
      assert.equal(hex(viaNode.dh(other.publicKey)), hex(viaNoble.dh(other.publicKey)));
      assert.equal(hex(other.dh(viaNode.publicKey)), hex(viaNode.dh(other.publicKey)));
    }
  });

  it("X25519: both refuse a small-order point (all-zero result)", () => {
    const key = random(32);
    const zeroPoint = new Uint8Array(32);
    assert.equal(node.importPrivateKey(key).dh(zeroPoint), null);
    assert.equal(noble.importPrivateKey(key).dh(zeroPoint), null);
  });

  it("ChaCha20-Poly1305 with AAD, and XChaCha20-Poly1305: seal on one, open on the other", () => {
    for (let i = 0; i < Rounds; i++) {
      const key = random(32);
      const plain = random(randomInt(0, 300));
      const aad = random(32);
      const counter = randomInt(0, 2 ** 40);
      const sealed = node.aeadSeal(key, counter, plain, aad);
      assert.equal(hex(sealed), hex(noble.aeadSeal(key, counter, plain, aad)));
      assert.equal(hex(noble.aeadOpen(key, counter, sealed, aad)), hex(plain));
      assert.equal(hex(node.aeadOpen(key, counter, sealed, aad)), hex(plain));
      sealed[0] ^= 1;
      assert.equal(node.aeadOpen(key, counter, sealed, aad), null);
      assert.equal(noble.aeadOpen(key, counter, sealed, aad), null);

      const nonce = random(24);
      const xsealed = node.xaeadSeal(key, nonce, plain, aad);
      assert.equal(hex(xsealed), hex(noble.xaeadSeal(key, nonce, plain, aad)));
      assert.equal(hex(node.xaeadOpen(key, nonce, xsealed, aad)), hex(plain));
    }
  });

  it("transport AEAD: padding, offsets and counters up to 2^53 agree; tampering is refused", () => {
    for (let i = 0; i < Rounds; i++) {
      const key = random(32);
      const sender = node.createTransportAead(key);
      const receiver = noble.createTransportAead(key);
      const plain = random(randomInt(0, 1500));
      const padding = randomInt(0, 16);
      const counter = i === 0 ? 2 ** 53 - 1 : randomInt(0, 2 ** 47);
      const out = new Uint8Array(plain.length + padding + 16 + 20);
      const writtenByNode = sender.seal(counter, plain, padding, out, 20);
      const copy = new Uint8Array(out.length);
      const writtenByNoble = receiver.seal(counter, plain, padding, copy, 20);
      assert.equal(writtenByNode, plain.length + padding + 16);
      assert.equal(writtenByNoble, writtenByNode);
      assert.equal(hex(out.subarray(20)), hex(copy.subarray(20)));
      const padded = new Uint8Array(plain.length + padding);
      padded.set(plain);
      assert.equal(hex(receiver.open(counter, out.subarray(20))), hex(padded));
      assert.equal(hex(sender.open(counter, out.subarray(20))), hex(padded));
      assert.equal(sender.open(counter + 1, out.subarray(20)), null);
      assert.equal(receiver.open(counter + 1, out.subarray(20)), null);
    }
  });
});
