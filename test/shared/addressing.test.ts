import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";
import {
  formatIPv6,
  formatPrefix,
  parseInterfaceAddress,
  prefixContains,
} from "../../shared/net/ip.ts";
import {
  kubeSpanPrefix,
  networkPrefix,
  type RandomSource,
  randomNodeAddress,
  serverAddress,
  virtualNetworkPrefix,
} from "../../shared/siderolink/addressing.ts";

/** Hands out the given 8-byte fills in order. */
function sequence(...fills: number[][]): RandomSource & { calls: number } {
  const source = Object.assign(
    (bytes: Uint8Array) => {
      bytes.set(fills[source.calls++]);
    },
    { calls: 0 },
  );
  return source;
}

describe("SideroLink address derivation", () => {
  it("derives Talos's prefixes (known answers)", () => {
    const cases: [string, string][] = [
      // SideroLink's documented defaults for the empty installation id.
      [formatPrefix(networkPrefix("")), "fdae:41e4:649b:9303::/64"],
      [formatPrefix(virtualNetworkPrefix()), "fdae:41e4:649b:9304::/64"],
      [formatPrefix(kubeSpanPrefix("")), "fdae:41e4:649b:9302::/64"],
      // Talos's own KubeSpan known answer (pkg/machinery/resources/network ula_test).
      [
        formatPrefix(kubeSpanPrefix("8XuV9TZHW08DOk3bVxQjH9ih_TBKjnh-j44tsCLSBzo=")),
        "fd7f:175a:b97c:5602::/64",
      ],
      // SHA-256("abc") is FIPS 180-2's example: ...b00361a396177a9cb410ff61f20015ad.
      [formatPrefix(networkPrefix("abc")), "fd03:61a3:9617:7a03::/64"],
    ];
    for (const [got, want] of cases) assert.equal(got, want);
  });

  it("hashes the id's UTF-8 bytes, as Go's []byte(string) does", () => {
    for (const id of ["installation-7", "ünïcødé ✓", "e3b0c442-98fc-1c14-9afb-f4c8996fb924"]) {
      const hash = createHash("sha256").update(id, "utf8").digest();
      const expected = Buffer.concat([Buffer.of(0xfd), hash.subarray(17, 23), Buffer.of(0x03)]);
      const bytes = networkPrefix(id).address;
      assert.deepEqual(Buffer.from(bytes.subarray(0, 8)), expected, id);
      assert.deepEqual([...bytes.subarray(8)], [0, 0, 0, 0, 0, 0, 0, 0], id);
    }
  });

  it("puts the server on the first host of the prefix", () => {
    assert.equal(formatIPv6(serverAddress(networkPrefix(""))), "fdae:41e4:649b:9303::1");
    const written = parseInterfaceAddress("fdae:41e4:649b:9303:aaaa:bbbb:cccc:dddd/64");
    assert.equal(formatIPv6(serverAddress(written)), "fdae:41e4:649b:9303::1");
  });

  it("gives nodes the prefix's 64 bits and 64 random ones", () => {
    const prefix = networkPrefix("");
    const random = sequence([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
    assert.equal(
      formatIPv6(randomNodeAddress(prefix, random)),
      "fdae:41e4:649b:9303:1234:5678:9abc:def0",
    );
    const written = parseInterfaceAddress("fdae:41e4:649b:9303:ffff:ffff:ffff:ffff/64");
    const again = randomNodeAddress(written, sequence([0, 0, 0, 0, 0, 0, 0, 2]));
    assert.equal(formatIPv6(again), "fdae:41e4:649b:9303::2");
  });

  it("draws again rather than hand out the prefix's own or the server's address", () => {
    const random = sequence(
      [0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 0, 0, 7],
    );
    assert.equal(
      formatIPv6(randomNodeAddress(virtualNetworkPrefix(), random)),
      "fdae:41e4:649b:9304::7",
    );
    assert.equal(random.calls, 3);
  });

  it("uses the platform's random source by default", () => {
    const prefix = networkPrefix("installation");
    const seen = new Set<string>();
    for (let i = 0; i < 64; i++) {
      const address = randomNodeAddress(prefix);
      assert.ok(prefixContains(prefix, address));
      seen.add(formatIPv6(address));
    }
    assert.equal(seen.size, 64);
  });

  it("refuses prefixes longer than /64", () => {
    assert.throws(
      () => randomNodeAddress(parseInterfaceAddress("fd00::/65")),
      /\/64 or shorter, got \/65/,
    );
  });
});
