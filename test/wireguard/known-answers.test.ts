/**
 * Known answers for WireGuard's primitives and handshake.
 *
 * Sources of the expected values:
 * - BLAKE2s-256("abc"): RFC 7693, Appendix B.
 * - Initial chaining key and hash: the constants every WireGuard implementation derives at
 *   start-up (HASH(Construction), HASH(C || Identifier)), as published in the test suites of
 *   several independent implementations; the hash after mixing the responder key {9, 0, ...}
 *   is the value an independent Go implementation's NewHandshakeState test publishes.
 * - HMAC and KDF: computed here from their definitions (RFC 2104 over BLAKE2s with 64-byte
 *   blocks; the WireGuard paper's KDF_n, section 5.2) with @noble's BLAKE2s only.
 * - MAC1, the full handshake and the transport keys: derived step by step below from the
 *   WireGuard paper (section 5.4.2-5.4.5) with @noble's X25519, BLAKE2s and
 *   ChaCha20-Poly1305 directly, not through shared/wireguard's noise code.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { blake2s } from "@noble/hashes/blake2.js";
import type { Clock } from "../../shared/wireguard/clock.ts";
import { CookieChecker, CookieGenerator } from "../../shared/wireguard/cookie.ts";
import { type CryptoProvider, createNobleCryptoProvider } from "../../shared/wireguard/crypto.ts";
import { initialChainKeyAndHash } from "../../shared/wireguard/noise-helpers.ts";
import {
  beginSymmetricSession,
  consumeMessageInitiation,
  consumeMessageResponse,
  createMessageInitiation,
  createMessageResponse,
  Handshake,
  type NoiseContext,
} from "../../shared/wireguard/noise-protocol.ts";
import { createNodeCryptoProvider } from "../../sidecar/wireguard/crypto-node.ts";

const providers: [string, CryptoProvider][] = [
  ["noble", createNobleCryptoProvider()],
  ["node", createNodeCryptoProvider()],
];

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const text = (value: string): Uint8Array => new TextEncoder().encode(value);
const cat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const filled = (length: number, start: number): Uint8Array =>
  Uint8Array.from({ length }, (_, i) => (start + i * 7) & 0xff);

// The paper's primitives, written out with @noble only.
const HASH = (...parts: Uint8Array[]): Uint8Array => blake2s(cat(...parts));
function HMAC(key: Uint8Array, data: Uint8Array): Uint8Array {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? HASH(key) : key);
  const inner = block.map((b) => b ^ 0x36);
  const outer = block.map((b) => b ^ 0x5c);
  return HASH(outer, HASH(inner, data));
}
function KDF(n: number, key: Uint8Array, input: Uint8Array): Uint8Array[] {
  const t0 = HMAC(key, input);
  const out: Uint8Array[] = [];
  let previous: Uint8Array = new Uint8Array(0);
  for (let i = 1; i <= n; i++) {
    previous = HMAC(t0, cat(previous, Uint8Array.of(i)));
    out.push(previous);
  }
  return out;
}
const MAC = (key: Uint8Array, data: Uint8Array): Uint8Array => blake2s(data, { key, dkLen: 16 });
const AEAD = (key: Uint8Array, counter: number, plain: Uint8Array, aad: Uint8Array): Uint8Array => {
  const nonce = new Uint8Array(12);
  new DataView(nonce.buffer).setBigUint64(4, BigInt(counter), true);
  return chacha20poly1305(key, nonce, aad).encrypt(plain);
};
const DH = (priv: Uint8Array, pub: Uint8Array): Uint8Array => x25519.getSharedSecret(priv, pub);
const le32 = (value: number): Uint8Array => {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
};

describe("primitives", () => {
  for (const [name, crypto] of providers) {
    it(`${name}: BLAKE2s-256 matches RFC 7693 Appendix B`, () => {
      assert.equal(
        hex(crypto.hash(text("abc"))),
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
      );
    });

    it(`${name}: initial chaining key and hash are WireGuard's`, () => {
      const { chainKey, hash } = initialChainKeyAndHash(crypto);
      assert.equal(
        hex(chainKey),
        "60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36",
      );
      assert.equal(hex(hash), "2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3");
      const responder = new Uint8Array(32);
      responder[0] = 9;
      assert.equal(
        hex(crypto.hash(hash, responder)),
        "575bad75a5a30f85f58df113422a55d41873e357b40a3a2ea91f456c9508211a",
      );
    });

    it(`${name}: HMAC-BLAKE2s and KDF1/2/3 chains follow their definitions`, () => {
      let chainKey = filled(32, 1);
      for (let step = 0; step < 5; step++) {
        const input = filled(step * 13, step);
        assert.equal(hex(crypto.hmac(chainKey, input)), hex(HMAC(chainKey, input)));
        for (const n of [1, 2, 3] as const) {
          assert.deepEqual(
            crypto.kdf(chainKey, input, n).map(hex),
            KDF(n, chainKey, input).map(hex),
          );
        }
        chainKey = KDF(1, chainKey, input)[0];
      }
    });
  }
});

describe("MAC1", () => {
  for (const [name, crypto] of providers) {
    it(`${name}: MAC1 = MAC(HASH("mac1----" || responder public key), message up to mac1)`, () => {
      const clock: Clock = {
        now: () => 0,
        wallNow: () => 0,
        setTimeout: () => 0,
        clearTimeout: () => {},
      };
      const responderPublic = x25519.getPublicKey(filled(32, 50));
      const message = filled(148, 3);
      message[0] = 1;
      message.fill(0, 1, 4);
      new CookieGenerator(crypto, clock, responderPublic).addMacs(message);
      const expected = MAC(HASH(text("mac1----"), responderPublic), message.subarray(0, 116));
      assert.equal(hex(message.subarray(116, 132)), hex(expected));
      assert.equal(hex(message.subarray(132)), "00".repeat(16), "no cookie, so MAC2 is zero");

      const checker = new CookieChecker(crypto, clock);
      checker.init(responderPublic);
      assert.equal(checker.checkMac1(message), true);
      message[40] ^= 1;
      assert.equal(checker.checkMac1(message), false);
    });
  }
});

describe("handshake with fixed keys", () => {
  const initiatorStatic = filled(32, 11);
  const responderStatic = filled(32, 77);
  const initiatorEphemeral = filled(32, 123);
  const responderEphemeral = filled(32, 201);
  const psk = filled(32, 5);
  // 2026-01-01T00:00:00Z: whole seconds, so TAI64N's nanoseconds are zero.
  const wallMs = Date.UTC(2026, 0, 1);
  const initiatorIndex = 0x11223344;
  const responderIndex = 0xa0b0c0d0;

  /** The paper's derivation, step by step. */
  function expected() {
    const Spub_i = x25519.getPublicKey(initiatorStatic);
    const Spub_r = x25519.getPublicKey(responderStatic);
    const Epub_i = x25519.getPublicKey(initiatorEphemeral);
    const Epub_r = x25519.getPublicKey(responderEphemeral);
    const timestamp = new Uint8Array(12);
    new DataView(timestamp.buffer).setBigUint64(0, 2n ** 62n + 10n + BigInt(wallMs / 1000));

    let C = HASH(text("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"));
    let H = HASH(C, text("WireGuard v1 zx2c4 Jason@zx2c4.com"));
    H = HASH(H, Spub_r);
    C = KDF(1, C, Epub_i)[0];
    H = HASH(H, Epub_i);
    let k: Uint8Array;
    [C, k] = KDF(2, C, DH(initiatorEphemeral, Spub_r));
    const encryptedStatic = AEAD(k, 0, Spub_i, H);
    H = HASH(H, encryptedStatic);
    [C, k] = KDF(2, C, DH(initiatorStatic, Spub_r));
    const encryptedTimestamp = AEAD(k, 0, timestamp, H);
    H = HASH(H, encryptedTimestamp);
    const initiationBody = cat(
      Uint8Array.of(1, 0, 0, 0),
      le32(initiatorIndex),
      Epub_i,
      encryptedStatic,
      encryptedTimestamp,
    );
    const initiation = cat(
      initiationBody,
      MAC(HASH(text("mac1----"), Spub_r), initiationBody),
      new Uint8Array(16),
    );
    const afterInitiation = { C, H };

    C = KDF(1, C, Epub_r)[0];
    H = HASH(H, Epub_r);
    C = KDF(1, C, DH(responderEphemeral, Epub_i))[0];
    C = KDF(1, C, DH(responderEphemeral, Spub_i))[0];
    const [chainKey, tau, key] = KDF(3, C, psk);
    C = chainKey;
    k = key;
    H = HASH(H, tau);
    const encryptedEmpty = AEAD(k, 0, new Uint8Array(0), H);
    H = HASH(H, encryptedEmpty);
    const responseBody = cat(
      Uint8Array.of(2, 0, 0, 0),
      le32(responderIndex),
      le32(initiatorIndex),
      Epub_r,
      encryptedEmpty,
    );
    const response = cat(
      responseBody,
      MAC(HASH(text("mac1----"), Spub_i), responseBody),
      new Uint8Array(16),
    );
    const [initiatorSend, initiatorReceive] = KDF(2, C, new Uint8Array(0));
    return {
      Spub_i,
      Spub_r,
      initiation,
      afterInitiation,
      response,
      afterResponse: { C, H },
      initiatorSend,
      initiatorReceive,
    };
  }

  for (const [name, provider] of providers) {
    it(`${name}: initiation, response and transport keys match the paper's derivation`, () => {
      const want = expected();
      const clock: Clock = {
        now: () => 1000,
        wallNow: () => wallMs,
        setTimeout: () => 0,
        clearTimeout: () => {},
      };
      const ephemerals = [initiatorEphemeral, responderEphemeral];
      const crypto: CryptoProvider = {
        ...provider,
        generateKeyPair: () => provider.importPrivateKey(ephemerals.shift()!),
      };
      const identity = (key: Uint8Array) => ({
        privateKey: key,
        keyPair: crypto.importPrivateKey(key),
      });
      const initiator: NoiseContext = { crypto, clock, identity: identity(initiatorStatic) };
      const responder: NoiseContext = { crypto, clock, identity: identity(responderStatic) };
      const initiatorPeer = { handshake: new Handshake(want.Spub_r) };
      const responderPeer = { handshake: new Handshake(want.Spub_i) };
      initiatorPeer.handshake.presharedKey = psk;
      responderPeer.handshake.presharedKey = psk;
      initiatorPeer.handshake.precompute(initiator.identity);
      responderPeer.handshake.precompute(responder.identity);

      const initiation = createMessageInitiation(
        initiator,
        initiatorPeer.handshake,
        initiatorIndex,
      );
      assert.ok(initiation);
      new CookieGenerator(crypto, clock, want.Spub_r).addMacs(initiation);
      assert.equal(hex(initiation), hex(want.initiation));
      assert.equal(hex(initiatorPeer.handshake.chainKey), hex(want.afterInitiation.C));
      assert.equal(hex(initiatorPeer.handshake.hash), hex(want.afterInitiation.H));

      const found = consumeMessageInitiation(responder, initiation, (key) =>
        hex(key) === hex(want.Spub_i) ? responderPeer : null,
      );
      assert.equal(found, responderPeer);
      assert.equal(hex(responderPeer.handshake.chainKey), hex(want.afterInitiation.C));
      assert.equal(hex(responderPeer.handshake.hash), hex(want.afterInitiation.H));
      assert.equal(responderPeer.handshake.remoteIndex, initiatorIndex);

      const response = createMessageResponse(responder, responderPeer.handshake, responderIndex);
      assert.ok(response);
      new CookieGenerator(crypto, clock, want.Spub_i).addMacs(response);
      assert.equal(hex(response), hex(want.response));
      assert.equal(hex(responderPeer.handshake.chainKey), hex(want.afterResponse.C));
      assert.equal(hex(responderPeer.handshake.hash), hex(want.afterResponse.H));

      const completed = consumeMessageResponse(initiator, response, (index) =>
        index === initiatorIndex ? initiatorPeer : null,
      );
      assert.equal(completed, initiatorPeer);
      assert.equal(hex(initiatorPeer.handshake.chainKey), hex(want.afterResponse.C));
      assert.equal(hex(initiatorPeer.handshake.hash), hex(want.afterResponse.H));

      const initiatorKeys = beginSymmetricSession(initiator, initiatorPeer.handshake);
      const responderKeys = beginSymmetricSession(responder, responderPeer.handshake);
      assert.ok(initiatorKeys && responderKeys);
      assert.equal(initiatorKeys.isInitiator, true);
      assert.equal(responderKeys.isInitiator, false);
      assert.equal(initiatorKeys.remoteIndex, responderIndex);
      assert.equal(responderKeys.remoteIndex, initiatorIndex);

      // Each direction's key is checked by what it produces: a packet sealed under it.
      const plaintext = filled(48, 9);
      const sealed = new Uint8Array(64);
      initiatorKeys.send.seal(7, plaintext, 0, sealed, 0);
      assert.equal(hex(sealed), hex(AEAD(want.initiatorSend, 7, plaintext, new Uint8Array(0))));
      assert.equal(hex(responderKeys.receive.open(7, sealed)!), hex(plaintext));
      responderKeys.send.seal(8, plaintext, 0, sealed, 0);
      assert.equal(hex(sealed), hex(AEAD(want.initiatorReceive, 8, plaintext, new Uint8Array(0))));
      assert.equal(hex(initiatorKeys.receive.open(8, sealed)!), hex(plaintext));
    });
  }

  it("a replayed initiation, or one with an equal timestamp, is rejected", () => {
    const crypto = createNobleCryptoProvider();
    let wall = wallMs;
    let now = 0;
    const clock: Clock = {
      now: () => now,
      wallNow: () => wall,
      setTimeout: () => 0,
      clearTimeout: () => {},
    };
    const identity = (key: Uint8Array) => ({
      privateKey: key,
      keyPair: crypto.importPrivateKey(key),
    });
    const initiator: NoiseContext = { crypto, clock, identity: identity(initiatorStatic) };
    const responder: NoiseContext = { crypto, clock, identity: identity(responderStatic) };
    const initiatorHandshake = new Handshake(responder.identity!.keyPair.publicKey);
    initiatorHandshake.precompute(initiator.identity);
    const responderPeer = { handshake: new Handshake(initiator.identity!.keyPair.publicKey) };
    responderPeer.handshake.precompute(responder.identity);
    const consume = (message: Uint8Array) =>
      consumeMessageInitiation(responder, message, () => responderPeer);

    const first = createMessageInitiation(initiator, initiatorHandshake, 1)!;
    assert.equal(consume(first), responderPeer);
    now += 10;
    wall += 1000;
    const tooSoon = createMessageInitiation(initiator, initiatorHandshake, 2)!;
    assert.equal(consume(tooSoon), null, "newer timestamp but within HANDSHAKE_INITIATION_RATE");
    now += 1000;
    assert.equal(consume(first), null, "replay of the first initiation");
    const sameTime = createMessageInitiation(initiator, initiatorHandshake, 3)!;
    assert.equal(consume(sameTime), responderPeer, "newer than the last accepted, rate respected");
    now += 1000;
    assert.equal(consume(tooSoon), null, "equal timestamp to the last accepted");
    wall += 1000;
    assert.equal(
      consume(createMessageInitiation(initiator, initiatorHandshake, 4)!),
      responderPeer,
    );
  });
});
