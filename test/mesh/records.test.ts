/**
 * The mesh's portable pieces against answers computed here independently: addresses with
 * node:crypto's SHA-256 and the EUI-64 rules, cluster ids and record keys with node:crypto's
 * SHA-256 and HKDF, sealed records opened with node:crypto's ChaCha20-Poly1305 after an
 * HChaCha20 written here (itself checked against draft-irtf-cfrg-xchacha's vector).
 */
import assert from "node:assert/strict";
import { createDecipheriv, createHash, hkdfSync } from "node:crypto";
import { describe, it } from "node:test";
import { meshAddress, meshInterfaceId, parseMeshPrefix } from "../../shared/mesh/address.ts";
import { clusterSecrets, memberIdOf, RECORD_KEY_INFO } from "../../shared/mesh/cluster.ts";
import {
  type AffiliateRecord,
  decodeRecord,
  encodeRecord,
  MAX_SEALED_RECORD_SIZE,
  openRecord,
  RecordError,
  sealRecord,
} from "../../shared/mesh/record.ts";
import { formatIP, parseIP } from "../../shared/net/ip.ts";

const key32 = (seed: number) => Uint8Array.from({ length: 32 }, (_, i) => (seed + i * 7) & 0xff);
const ip = (text: string) => parseIP(text)!;

describe("mesh address", () => {
  it("is the prefix and the EUI-64 expansion of a pseudo-MAC hashed from the key", () => {
    const publicKey = key32(3);
    const hash = createHash("sha256")
      .update("siderolink-edge mesh interface id v1")
      .update(publicKey)
      .digest();
    const mac = [(hash[0] | 0x02) & 0xfe, hash[1], hash[2], hash[3], hash[4], hash[5]];
    const id = [mac[0] ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]];
    assert.deepEqual([...meshInterfaceId(publicKey)], id);
    const address = meshAddress(parseMeshPrefix("0200:1001::/64"), publicKey);
    assert.deepEqual([...address.subarray(0, 8)], [2, 0, 0x10, 0x01, 0, 0, 0, 0]);
    assert.deepEqual([...address.subarray(8)], id);
    assert.equal(address[8] & 0x03, 0, "universal/local bit clear, unicast");
    assert.match(
      formatIP(address),
      /^200:1001::[0-9a-f]{1,4}:[0-9a-f]{0,2}ff:fe[0-9a-f]{2}:[0-9a-f]{1,4}$/,
    );
  });

  it("differs between keys and repeats for the same key", () => {
    const prefix = parseMeshPrefix("fd00:1:2:3::/64");
    assert.deepEqual(meshAddress(prefix, key32(1)), meshAddress(prefix, key32(1)));
    assert.notDeepEqual(meshAddress(prefix, key32(1)), meshAddress(prefix, key32(2)));
  });

  it("refuses prefixes that leave no room for the interface id, naming the flag", () => {
    assert.throws(
      () => parseMeshPrefix("fd00::/96"),
      /--prefix: "fd00::\/96" is not an IPv6 prefix of at most \/64/,
    );
    assert.throws(() => parseMeshPrefix("10.0.0.0/8"), /--prefix/);
  });
});

describe("cluster secrets", () => {
  it("are SHA-256 of the token and HKDF-SHA256 with the record info", () => {
    const token = "  a-cluster-token-of-some-length\n";
    const secrets = clusterSecrets(token);
    assert.equal(
      secrets.clusterId,
      createHash("sha256").update("a-cluster-token-of-some-length").digest("hex"),
    );
    const expected = Buffer.from(
      hkdfSync("sha256", "a-cluster-token-of-some-length", Buffer.alloc(0), RECORD_KEY_INFO, 32),
    );
    assert.deepEqual(Buffer.from(secrets.recordKey), expected);
    assert.equal(RECORD_KEY_INFO, "siderolink-edge mesh record v1");
  });

  it("refuses short tokens", () => {
    assert.throws(() => clusterSecrets("short"), /at least 16/);
  });
});

const record: AffiliateRecord = {
  publicKey: key32(9),
  meshAddress: ip("200:1001::1234:56ff:fe78:9abc"),
  listenPort: 51820,
  expiresAt: 1_900_000_000,
  routedPrefixes: [
    { address: ip("10.244.1.0"), bits: 24 },
    { address: ip("fd42::"), bits: 48 },
  ],
  endpoints: [
    { address: ip("192.0.2.7"), port: 51820 },
    { address: ip("2001:db8::7"), port: 40000 },
  ],
};

describe("record codec", () => {
  it("writes the documented layout", () => {
    const bytes = encodeRecord(record);
    const expected = Buffer.concat([
      Buffer.from([1]),
      record.publicKey,
      record.meshAddress,
      Buffer.from([0xca, 0x6c]), // 51820
      Buffer.from([0x71, 0x3f, 0xb3, 0x00]), // 1_900_000_000
      Buffer.from([2, 4, 24, 10, 244, 1, 0, 16, 48]),
      ip("fd42::"),
      Buffer.from([2, 4, 192, 0, 2, 7, 0xca, 0x6c, 16]),
      ip("2001:db8::7"),
      Buffer.from([0x9c, 0x40]),
    ]);
    assert.deepEqual(Buffer.from(bytes), expected);
    assert.deepEqual(decodeRecord(bytes), record);
  });

  it("refuses truncated, padded and over-long records, naming what is wrong", () => {
    const bytes = encodeRecord(record);
    for (let cut = 0; cut < bytes.length; cut++) {
      assert.throws(() => decodeRecord(bytes.subarray(0, cut)), RecordError, `cut at ${cut}`);
    }
    assert.throws(() => decodeRecord(Buffer.concat([bytes, Buffer.from([0])])), /1 bytes after/);
    const many = { ...record, endpoints: Array.from({ length: 17 }, () => record.endpoints[0]) };
    assert.throws(() => encodeRecord(many), /17 endpoints, at most 16/);
    const full = {
      ...record,
      routedPrefixes: Array.from({ length: 32 }, () => record.routedPrefixes[1]),
      endpoints: Array.from({ length: 16 }, () => record.endpoints[1]),
    };
    assert.equal(sealRecord(key32(1), full).length, MAX_SEALED_RECORD_SIZE);
  });
});

describe("sealed records", () => {
  const key = key32(100);
  const nonce = Uint8Array.from({ length: 24 }, (_, i) => i + 1);

  it("are nonce | XChaCha20-Poly1305(record) with the member id as associated data", () => {
    const sealed = sealRecord(key, record, nonce);
    assert.deepEqual(sealed.subarray(0, 24), nonce);
    const subkey = hchacha20(key, nonce.subarray(0, 16));
    const iv = Buffer.concat([Buffer.alloc(4), nonce.subarray(16)]);
    const body = sealed.subarray(24, sealed.length - 16);
    const decipher = createDecipheriv("chacha20-poly1305", subkey, iv, { authTagLength: 16 });
    decipher.setAAD(createHash("sha256").update(record.publicKey).digest(), {
      plaintextLength: body.length,
    });
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const plaintext = Buffer.concat([decipher.update(body), decipher.final()]);
    assert.deepEqual(plaintext, Buffer.from(encodeRecord(record)));
    assert.deepEqual(openRecord(key, memberIdOf(record.publicKey), sealed), record);
  });

  it("do not open with another cluster's key, in another slot, or tampered", () => {
    const sealed = sealRecord(key, record);
    const slot = memberIdOf(record.publicKey);
    assert.throws(() => openRecord(key32(101), slot, sealed), /does not authenticate/);
    assert.throws(() => openRecord(key, memberIdOf(key32(10)), sealed), /does not authenticate/);
    for (const at of [0, 30, sealed.length - 1]) {
      const bad = sealed.slice();
      bad[at] ^= 1;
      assert.throws(() => openRecord(key, slot, bad), RecordError);
    }
  });

  it("test HChaCha20 matches draft-irtf-cfrg-xchacha section 2.2.1", () => {
    const k = Uint8Array.from({ length: 32 }, (_, i) => i);
    const n = Buffer.from("000000090000004a0000000031415927", "hex");
    assert.equal(
      Buffer.from(hchacha20(k, n)).toString("hex"),
      "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc",
    );
  });
});

/** HChaCha20 (draft-irtf-cfrg-xchacha section 2.2), written from the draft for this test. */
function hchacha20(key: Uint8Array, nonce16: Uint8Array): Uint8Array {
  const k = new DataView(key.buffer, key.byteOffset, 32);
  const n = new DataView(nonce16.buffer, nonce16.byteOffset, 16);
  const s = new Uint32Array(16);
  s.set([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);
  for (let i = 0; i < 8; i++) s[4 + i] = k.getUint32(i * 4, true);
  for (let i = 0; i < 4; i++) s[12 + i] = n.getUint32(i * 4, true);
  const rotl = (v: number, c: number) => ((v << c) | (v >>> (32 - c))) >>> 0;
  const qr = (a: number, b: number, c: number, d: number) => {
    s[a] += s[b];
    s[d] = rotl(s[d] ^ s[a], 16);
    s[c] += s[d];
    s[b] = rotl(s[b] ^ s[c], 12);
    s[a] += s[b];
    s[d] = rotl(s[d] ^ s[a], 8);
    s[c] += s[d];
    s[b] = rotl(s[b] ^ s[c], 7);
  };
  for (let i = 0; i < 10; i++) {
    qr(0, 4, 8, 12);
    qr(1, 5, 9, 13);
    qr(2, 6, 10, 14);
    qr(3, 7, 11, 15);
    qr(0, 5, 10, 15);
    qr(1, 6, 11, 12);
    qr(2, 7, 8, 13);
    qr(3, 4, 9, 14);
  }
  const out = new Uint8Array(32);
  const o = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) o.setUint32(i * 4, s[i], true);
  for (let i = 0; i < 4; i++) o.setUint32(16 + i * 4, s[12 + i], true);
  return out;
}
