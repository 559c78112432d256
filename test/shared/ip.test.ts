/**
 * The one IP text module the relay, the WireGuard device and the sidecar share: known answers
 * for both families, the IPv4-mapped form, and masks; WHATWG URL parsing as an independent
 * reading of IPv4 text.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  formatIP,
  isIPv4Mapped,
  maskAddress,
  parseIP,
  parseIPv4OrReason,
  parseIPv6OrReason,
} from "../../shared/net/ip.ts";

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

describe("IP text", () => {
  it("reads both families to their bytes", () => {
    assert.equal(hex(parseIP("192.0.2.1")!), "c0000201");
    assert.equal(hex(parseIP("0.0.0.0")!), "00000000");
    assert.equal(hex(parseIP("255.255.255.255")!), "ffffffff");
    assert.equal(hex(parseIP("2001:db8::1")!), "20010db8000000000000000000000001");
    assert.equal(hex(parseIP("::ffff:192.0.2.1")!), "00000000000000000000ffffc0000201");
  });

  it("writes dotted quads and RFC 5952 text, IPv4-mapped as ::ffff:a.b.c.d", () => {
    assert.equal(formatIP(Uint8Array.of(10, 0, 0, 1)), "10.0.0.1");
    assert.equal(formatIP(parseIP("2001:DB8:0:0:1:0:0:1")!), "2001:db8::1:0:0:1");
    assert.equal(formatIP(parseIP("0:0:0:0:0:ffff:a00:1")!), "::ffff:10.0.0.1");
    assert.equal(isIPv4Mapped(parseIP("::ffff:10.0.0.1")!), true);
    assert.equal(isIPv4Mapped(parseIP("::10.0.0.1")!), false);
    assert.equal(isIPv4Mapped(Uint8Array.of(10, 0, 0, 1)), false);
  });

  it("agrees with the WHATWG URL parser on dotted quads", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (bytes) => {
        const text = formatIP(bytes);
        assert.equal(new URL(`http://${text}/`).hostname, text);
        assert.deepEqual(parseIP(text), bytes);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses what is not an address, saying why", () => {
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "1.2.3.256", "010.0.0.1", "1.2.3.-1", "a.b.c.d"]) {
      assert.equal(parseIP(bad), undefined, bad);
    }
    assert.equal(parseIPv4OrReason("010.0.0.1"), "010.0.0.1 is not an IPv4 address");
    assert.equal(parseIPv4OrReason("1.2.3"), '"1.2.3" is not a dotted quad');
    assert.equal(parseIPv6OrReason("fe80::1%eth0"), "zones are not supported");
    assert.equal(parseIPv6OrReason("1::2::3"), "'::' may appear only once");
    assert.equal(parseIPv6OrReason("::ffff:10.0.0.01"), "10.0.0.01 is not an IPv4 address");
    assert.equal(parseIP("1.2.3.4::"), undefined);
  });
});

describe("masks", () => {
  it("clears every bit after the prefix length", () => {
    assert.equal(hex(maskAddress(Uint8Array.of(10, 1, 2, 3), 8)), "0a000000");
    assert.equal(hex(maskAddress(Uint8Array.of(10, 1, 255, 3), 20)), "0a01f000");
    assert.equal(hex(maskAddress(Uint8Array.of(10, 1, 2, 3), 32)), "0a010203");
    assert.equal(hex(maskAddress(Uint8Array.of(10, 1, 2, 3), 0)), "00000000");
    assert.equal(formatIP(maskAddress(parseIP("fd00::ffff")!, 116)), "fd00::f000");
  });
});
