import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey, diffieHellman } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import {
  formatKey,
  generatePrivateKey,
  parseKey,
  publicKey,
  sharedSecret,
} from "../../shared/siderolink/keys.ts";

interface Rfc7748 {
  scalarMult: { scalar: string; u: string; output: string }[];
  iterated: { start: string; after: { rounds: number; k: string }[] };
  diffieHellman: Record<
    "alicePrivate" | "alicePublic" | "bobPrivate" | "bobPublic" | "shared",
    string
  >;
}

const vectors: Rfc7748 = JSON.parse(
  readFileSync(new URL("./vectors/rfc7748.json", import.meta.url), "utf8"),
);
const bytes = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, "hex"));
const hex = (value: Uint8Array): string => Buffer.from(value).toString("hex");

/** node:crypto's X25519, an implementation independent of the one under test. */
function nodeKeys(privateKey: Uint8Array) {
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), privateKey]);
  const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  const jwk = createPublicKey(key).export({ format: "jwk" });
  return { key, publicKey: new Uint8Array(Buffer.from(jwk.x!, "base64url")) };
}

describe("X25519 (RFC 7748 vectors)", () => {
  it("section 5.2: scalar multiplication", () => {
    for (const { scalar, u, output } of vectors.scalarMult) {
      assert.equal(hex(sharedSecret(bytes(scalar), bytes(u))), output);
    }
  });

  it("section 5.2: iterated 1 and 1,000 times", () => {
    let k = bytes(vectors.iterated.start);
    let u = k;
    let round = 0;
    for (const { rounds, k: expected } of vectors.iterated.after) {
      for (; round < rounds; round++) [k, u] = [sharedSecret(k, u), k];
      assert.equal(hex(k), expected, `after ${rounds}`);
    }
  });

  it("section 6.1: public keys and the shared secret", () => {
    const dh = vectors.diffieHellman;
    assert.equal(hex(publicKey(bytes(dh.alicePrivate))), dh.alicePublic);
    assert.equal(hex(publicKey(bytes(dh.bobPrivate))), dh.bobPublic);
    assert.equal(hex(sharedSecret(bytes(dh.alicePrivate), bytes(dh.bobPublic))), dh.shared);
    assert.equal(hex(sharedSecret(bytes(dh.bobPrivate), bytes(dh.alicePublic))), dh.shared);
  });
});

describe("WireGuard keys", () => {
  it("generates clamped keys whose public halves node:crypto agrees with", () => {
    const peer = generatePrivateKey();
    const peerPublic = createPublicKey(nodeKeys(peer).key);
    const seen = new Set<string>();
    for (let i = 0; i < 16; i++) {
      const key = generatePrivateKey();
      assert.equal(key.length, 32);
      assert.equal(key[0] & 7, 0);
      assert.equal(key[31] & 0xc0, 0x40);
      seen.add(hex(key));
      const reference = nodeKeys(key);
      assert.deepEqual(publicKey(key), reference.publicKey);
      const secret = diffieHellman({ privateKey: reference.key, publicKey: peerPublic });
      assert.deepEqual(sharedSecret(key, publicKey(peer)), new Uint8Array(secret));
    }
    assert.equal(seen.size, 16);
  });

  it("refuses a low-order peer key instead of an all-zero secret", () => {
    assert.throws(() => sharedSecret(generatePrivateKey(), new Uint8Array(32)));
  });

  it("writes and reads keys as padded standard base64", () => {
    const dh = vectors.diffieHellman;
    const written = formatKey(bytes(dh.alicePublic));
    assert.equal(written, Buffer.from(dh.alicePublic, "hex").toString("base64"));
    assert.equal(written.length, 44);
    assert.deepEqual(parseKey(written, "server_public_key"), bytes(dh.alicePublic));
    for (let i = 0; i < 32; i++) {
      const key = generatePrivateKey();
      assert.deepEqual(parseKey(Buffer.from(key).toString("base64"), "key"), key);
      assert.deepEqual(parseKey(formatKey(key), "key"), key);
    }
  });

  it("refuses bad text, naming the field and what it expected", () => {
    const b64 = (length: number) => Buffer.alloc(length, 0xa5).toString("base64");
    const good = b64(32);
    const cases: [string, "missing" | "invalid", RegExp][] = [
      [b64(31), "invalid", /^node_public_key: expected 32 bytes of base64, got 31$/],
      [b64(33), "invalid", /^node_public_key: expected 32 bytes of base64, got 33$/],
      [b64(0), "missing", /^node_public_key: empty; expected 32 bytes of base64/],
      [
        good.slice(0, 43),
        "invalid",
        /not base64: 43 characters is not a multiple of 4 \(missing '=' padding\?\)/,
      ],
      [
        `${good.slice(0, 5)}!${good.slice(6)}`,
        "invalid",
        /not base64: unexpected character at position 5/,
      ],
      [good.replace(/.$/, "-"), "invalid", /unexpected character at position 43/],
      [` ${good.slice(1)}`, "invalid", /unexpected character at position 0/],
      [`${good}\n`, "invalid", /unexpected character at position 44/],
      [`AAAA=AAA${good.slice(8)}`, "invalid", /'=' belongs only at the end, at most twice/],
      ["AAAAA===", "invalid", /'=' belongs only at the end/],
    ];
    for (const [text, code, message] of cases) {
      assert.throws(
        () => parseKey(text, "node_public_key"),
        (error: unknown) => {
          assert.ok(error instanceof SideroLinkError);
          assert.equal(error.field, "node_public_key");
          assert.equal(error.code, code);
          assert.match(error.message, message);
          assert.match(error.message, /expected 32 bytes of base64/);
          if (text.length > 8)
            assert.ok(!error.message.includes(text.slice(0, 8)), "echoes the key");
          return true;
        },
        JSON.stringify(text),
      );
    }
  });
});
