import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatPrefix, parseNetworkPrefix } from "../../shared/net/ip.ts";
import { AllowedIps, formatAddress, parseAddress } from "../../shared/wireguard/allowed-ips.ts";

const table = (entries: [string, string][]): AllowedIps<string> => {
  const ips = new AllowedIps<string>();
  for (const [prefix, peer] of entries) ips.insert(parseNetworkPrefix(prefix), peer);
  return ips;
};
const find = (ips: AllowedIps<string>, address: string): string | null =>
  ips.lookupAddress(parseAddress(address));
const entries = (ips: AllowedIps<string>, peer: string): string[] =>
  ips.entriesFor(peer).map(formatPrefix).sort();

describe("allowed IPs", () => {
  it("IPv4 longest-prefix match with overlapping prefixes", () => {
    const ips = table([
      ["0.0.0.0/0", "default"],
      ["10.0.0.0/8", "a"],
      ["10.1.0.0/16", "b"],
      ["10.1.2.0/24", "c"],
      ["10.1.2.3/32", "d"],
      ["10.128.0.0/9", "e"],
    ]);
    assert.equal(find(ips, "10.1.2.3"), "d");
    assert.equal(find(ips, "10.1.2.4"), "c");
    assert.equal(find(ips, "10.1.3.1"), "b");
    assert.equal(find(ips, "10.2.0.1"), "a");
    assert.equal(find(ips, "10.200.0.1"), "e");
    assert.equal(find(ips, "192.168.1.1"), "default");
  });

  it("IPv6 longest-prefix match; families are separate", () => {
    const ips = table([
      ["fd00::/8", "ula"],
      ["fdae:41e4:649b:9303::/64", "net"],
      ["fdae:41e4:649b:9303::1/128", "server"],
      ["10.0.0.0/8", "v4"],
    ]);
    assert.equal(find(ips, "fdae:41e4:649b:9303::1"), "server");
    assert.equal(find(ips, "fdae:41e4:649b:9303::2"), "net");
    assert.equal(find(ips, "fd01::1"), "ula");
    assert.equal(find(ips, "2001:db8::1"), null);
    assert.equal(find(ips, "::ffff:10.0.0.1"), null, "IPv4-mapped IPv6 is IPv6");
    assert.equal(find(ips, "10.0.0.1"), "v4");
  });

  it("insert masks host bits and replaces the owner of an identical prefix", () => {
    const ips = table([["10.1.2.3/24", "a"]]);
    assert.deepEqual(entries(ips, "a"), ["10.1.2.0/24"]);
    ips.insert(parseNetworkPrefix("10.1.2.0/24"), "b");
    assert.deepEqual(entries(ips, "a"), []);
    assert.equal(find(ips, "10.1.2.200"), "b");
  });

  it("removal keeps the other prefixes reachable", () => {
    const ips = table([
      ["10.0.0.0/8", "a"],
      ["10.1.0.0/16", "b"],
      ["10.1.128.0/17", "c"],
      ["10.2.0.0/16", "d"],
      ["fd00::/64", "b"],
    ]);
    assert.equal(ips.remove(parseNetworkPrefix("10.1.0.0/16")), true);
    assert.equal(ips.remove(parseNetworkPrefix("10.1.0.0/16")), false);
    assert.equal(find(ips, "10.1.0.1"), "a");
    assert.equal(find(ips, "10.1.200.1"), "c");
    assert.equal(find(ips, "10.2.0.1"), "d");
    ips.removeValue("b");
    assert.equal(find(ips, "fd00::1"), null);
    ips.removeValue("a");
    assert.equal(find(ips, "10.3.0.1"), null);
    assert.equal(find(ips, "10.1.200.1"), "c");
    assert.deepEqual(entries(ips, "d"), ["10.2.0.0/16"]);
  });

  it("entriesFor lists exactly a peer's prefixes", () => {
    const ips = table([
      ["10.0.0.0/8", "a"],
      ["10.1.0.0/16", "b"],
      ["fd00::1/128", "a"],
      ["0.0.0.0/0", "a"],
    ]);
    assert.deepEqual(entries(ips, "a"), ["0.0.0.0/0", "10.0.0.0/8", "fd00::1/128"]);
    assert.deepEqual(entries(ips, "b"), ["10.1.0.0/16"]);
  });

  it("agrees with a linear scan on random tables", () => {
    const random = (n: number) => Math.floor(Math.random() * n);
    for (let round = 0; round < 20; round++) {
      const ips = new AllowedIps<number>();
      const list: { address: Uint8Array; bits: number; peer: number }[] = [];
      for (let i = 0; i < 60; i++) {
        const prefix = parseNetworkPrefix(
          `10.${random(4)}.${random(256)}.${random(256)}/${8 + random(25)}`,
        );
        ips.insert(prefix, i);
        const same = list.findIndex(
          (e) => e.bits === prefix.bits && formatPrefix(e) === formatPrefix(prefix),
        );
        if (same >= 0) list.splice(same, 1);
        list.push({ ...prefix, peer: i });
      }
      for (let i = 0; i < 20; i++) {
        const victim = list.splice(random(list.length), 1)[0];
        assert.equal(ips.remove(victim), true);
      }
      for (let i = 0; i < 300; i++) {
        const address = parseAddress(`10.${random(4)}.${random(256)}.${random(256)}`);
        let best: { bits: number; peer: number } | null = null;
        for (const entry of list) {
          const covered = matches(entry.address, entry.bits, address);
          if (covered && (best === null || entry.bits > best.bits)) best = entry;
        }
        assert.equal(ips.lookupAddress(address), best?.peer ?? null, formatAddress(address));
      }
    }
  });

  it("parses and formats addresses as Go's netip does", () => {
    assert.equal(
      formatAddress(parseAddress("fdae:41e4:649b:9303:0:0:0:1")),
      "fdae:41e4:649b:9303::1",
    );
    assert.equal(formatAddress(parseAddress("::")), "::");
    assert.equal(formatAddress(parseAddress("1:0:0:2:0:0:0:3")), "1:0:0:2::3");
    assert.equal(formatAddress(parseAddress("1:0:2:3:4:5:6:7")), "1:0:2:3:4:5:6:7");
    assert.throws(() => parseNetworkPrefix("10.0.0.0/33"), /prefix length/);
    assert.throws(() => parseNetworkPrefix("10.0.0/8"), /invalid IP address/);
    assert.throws(() => parseNetworkPrefix("fd00::g/64"), /invalid IP address/);
  });
});

function matches(prefix: Uint8Array, bits: number, address: Uint8Array): boolean {
  for (let i = 0; i < bits; i++) {
    const bit = (bytes: Uint8Array) => (bytes[i >> 3] >> (7 - (i & 7))) & 1;
    if (bit(prefix) !== bit(address)) return false;
  }
  return true;
}
