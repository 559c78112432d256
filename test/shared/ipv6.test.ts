import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  formatAddrPort,
  formatIPv6,
  formatPrefix,
  maskPrefix,
  parseAddrPort,
  parseInterfaceAddress,
  parseIPv6,
  parseNetworkPrefix,
  prefixContains,
  prefixFrom,
} from "../../shared/net/ip.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

describe("IPv6 text", () => {
  it("formats as RFC 5952 section 4 prescribes", () => {
    const cases: [string, string][] = [
      // RFC 5952's own examples.
      ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
      ["2001:db8:0:0:0:0:2:1", "2001:db8::2:1"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
      ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:DB8::1", "2001:db8::1"],
      ["0:0:0:0:0:0:0:0", "::"],
      ["0:0:0:0:0:0:0:1", "::1"],
      ["1:0:0:0:0:0:0:0", "1::"],
      ["fdae:41e4:649b:9303:0:0:0:1", "fdae:41e4:649b:9303::1"],
      ["0:0:0:0:0:ffff:c000:201", "::ffff:192.0.2.1"],
      ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
      ["::192.0.2.1", "::c000:201"],
      ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
      ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ];
    for (const [input, want] of cases) assert.equal(formatIPv6(parseIPv6(input)), want, input);
  });

  it("parses to the bytes of the address", () => {
    assert.equal(hex(parseIPv6("fdae:41e4:649b:9303::1")), "fdae41e4649b93030000000000000001");
    assert.equal(hex(parseIPv6("::ffff:10.1.2.3")), "00000000000000000000ffff0a010203");
    assert.equal(hex(parseIPv6("::")), "00".repeat(16));
  });

  it("agrees with the WHATWG URL parser on canonical text for any address", () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    const address = fc
      .array(group, { minLength: 8, maxLength: 8 })
      .map((groups) => Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff])))
      // WHATWG writes IPv4-mapped addresses in hex; RFC 5952 section 5 wants a dotted quad.
      .filter((bytes) => !hex(bytes).startsWith("00000000000000000000ffff"));
    fc.assert(
      fc.property(address, (bytes) => {
        const text = formatIPv6(bytes);
        const uncompressed = Array.from({ length: 8 }, (_, i) =>
          ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16).padStart(4, "0"),
        ).join(":");
        assert.equal(`[${text}]`, new URL(`http://[${uncompressed}]/`).hostname);
        assert.deepEqual(parseIPv6(text), bytes);
        assert.deepEqual(parseIPv6(uncompressed.toUpperCase()), bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it("refuses malformed text, naming the field and the text", () => {
    const cases: [string, RegExp][] = [
      ["", /0 groups instead of 8/],
      ["1:2:3:4:5:6:7", /7 groups instead of 8/],
      ["1:2:3:4:5:6:7:8:9", /9 groups instead of 8/],
      ["1::2::3", /'::' may appear only once/],
      ["1:2:3:4:5:6:7:8::", /at least one group/],
      ["12345::", /"12345" is not 1-4 hex digits/],
      ["g::", /"g" is not 1-4 hex digits/],
      [":1::", /"" is not 1-4 hex digits/],
      [":::", /is not 1-4 hex digits/],
      ["fe80::1%eth0", /zones are not supported/],
      ["::1.2.3.256", /1\.2\.3\.256 is not an IPv4 address/],
      ["1.2.3.4::", /"1\.2\.3\.4" is not 1-4 hex digits/],
      ["10.0.0.1", /2 groups instead of 8/],
      ["0:0:0:0:0:0:0:1:", /"" is not 1-4 hex digits/],
    ];
    for (const [input, reason] of cases) {
      assert.throws(
        () => parseIPv6(input, "server_address"),
        (error: unknown) => {
          assert.ok(error instanceof SideroLinkError);
          assert.equal(error.field, "server_address");
          assert.equal(error.code, "invalid");
          assert.ok(error.message.startsWith(`server_address: ${JSON.stringify(input)}`));
          assert.match(error.message, reason);
          return true;
        },
        input,
      );
    }
  });
});

describe("prefixes: interface addresses and network prefixes", () => {
  it("tells which addresses share the prefix", () => {
    const cases: [string, string, boolean][] = [
      ["fdae:41e4:649b:9303::/64", "fdae:41e4:649b:9303:ffff:ffff:ffff:ffff", true],
      ["fdae:41e4:649b:9303::/64", "fdae:41e4:649b:9304::1", false],
      ["fdae:41e4:649b:9303::/63", "fdae:41e4:649b:9302::1", true],
      ["fdae:41e4:649b:9303::/64", "fdae:41e4:649b:9302::1", false],
      ["fd00::/7", "fc00::1", true],
      ["fd00::/8", "fc00::1", false],
      ["fd00::1/128", "fd00::1", true],
      ["fd00::1/128", "fd00::2", false],
      ["fd00::1/127", "fd00::", true],
      ["fd00::1/0", "2001:db8::1", true],
    ];
    for (const [prefix, address, want] of cases) {
      assert.equal(
        prefixContains(parseInterfaceAddress(prefix), parseIPv6(address)),
        want,
        `${prefix} ∋ ${address}`,
      );
    }
    assert.equal(prefixContains(parseInterfaceAddress("::/0"), new Uint8Array(4)), false);
    assert.equal(prefixContains(parseNetworkPrefix("0.0.0.0/0"), new Uint8Array(16)), false);
  });

  it("keeps an interface address's host bits and clears a network prefix's", () => {
    const nodeAddress = parseInterfaceAddress("fdae:41e4:649b:9303:1234:5678:9abc:def0/64");
    assert.equal(formatPrefix(nodeAddress), "fdae:41e4:649b:9303:1234:5678:9abc:def0/64");
    assert.equal(formatIPv6(nodeAddress.address), "fdae:41e4:649b:9303:1234:5678:9abc:def0");
    assert.equal(formatPrefix(maskPrefix(nodeAddress)), "fdae:41e4:649b:9303::/64");
    assert.equal(
      formatPrefix(maskPrefix(parseInterfaceAddress("fd00::ffff/116"))),
      "fd00::f000/116",
    );
    const network = parseNetworkPrefix("fdae:41e4:649b:9303:1234:5678:9abc:def0/64");
    assert.equal(formatPrefix(network), "fdae:41e4:649b:9303::/64");
    assert.equal(formatPrefix(parseNetworkPrefix("10.1.255.3/20")), "10.1.240.0/20");
    assert.equal(formatPrefix(parseNetworkPrefix("fd00::1")), "fd00::1/128");
    assert.equal(formatPrefix(parseNetworkPrefix("10.0.0.1")), "10.0.0.1/32");
  });

  it("copies the bytes it is given", () => {
    const bytes = parseIPv6("fd00::1");
    const prefix = prefixFrom(bytes, 64);
    bytes[0] = 0;
    assert.equal(formatPrefix(prefix), "fd00::1/64");
  });

  it("refuses lengths outside the family's range and text without one, naming the field", () => {
    for (const bad of ["fd00::/129", "fd00::", "fd00::/", "fd00::/x", "fd00::/-1", "10.0.0.0/8"]) {
      assert.throws(
        () => parseInterfaceAddress(bad, "node_address_prefix"),
        /^SideroLinkError: node_address_prefix: /,
        bad,
      );
    }
    for (const bad of ["fd00::/129", "10.0.0.0/33", "fd00::/", "10.0.0/8", "fd00::g/64"]) {
      assert.throws(
        () => parseNetworkPrefix(bad, "allowed_ip"),
        /^SideroLinkError: allowed_ip: (invalid IP address|invalid prefix length)/,
        bad,
      );
    }
    assert.throws(() => prefixFrom(new Uint8Array(16), 129), RangeError);
    assert.throws(() => prefixFrom(new Uint8Array(4), 33), RangeError);
    assert.throws(() => prefixFrom(new Uint8Array(5), 8), RangeError);
  });
});

describe("IPv6 address and port", () => {
  it("writes and reads the [address]:port form of grpc_peer_addr_port", () => {
    const address = parseIPv6("fdae:41e4:649b:9304:0:0:0:2");
    assert.equal(formatAddrPort(address, 50888), "[fdae:41e4:649b:9304::2]:50888");
    const parsed = parseAddrPort("[fdae:41e4:649b:9304::2]:50888", "grpc_peer_addr_port");
    assert.deepEqual(parsed, { address, port: 50888 });
  });

  it("refuses other forms, naming the field", () => {
    for (const bad of [
      "fdae::2:50888",
      "[fdae::2]",
      "[fdae::2]:",
      "[fdae::2]:0",
      "[fdae::2]:65536",
      "[fdae::2]:+1",
      "[fdae::zz]:1",
      "fdae::2]:1",
    ]) {
      assert.throws(
        () => parseAddrPort(bad, "grpc_peer_addr_port"),
        /^SideroLinkError: grpc_peer_addr_port: /,
        bad,
      );
    }
  });
});
