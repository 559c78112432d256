/**
 * The relay's HTTP surface shared by the relay and the sidecar: the literal paths and header
 * below are the wire itself (what Talos and deployed sidecars send), so they are spelled out.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import {
  canonicalPeerAddress,
  formatJoinToken,
  isNetworkName,
  networkInPath,
  PEER_ADDRESS_HEADER,
  parseJoinToken,
  TUNNEL_ROUTE,
  tunnelPath,
  UPLINK_ROUTE,
  uplinkPath,
  validateNetworkName,
} from "../../shared/siderolink/relay-api.ts";

describe("relay API paths and header", () => {
  it("names the streams' paths and the peer address header as deployed clients send them", () => {
    assert.equal(PEER_ADDRESS_HEADER, "x-siderolink-ipv6-addr");
    assert.equal(tunnelPath("prod"), "/v1/networks/prod/tunnel");
    assert.equal(uplinkPath("prod"), "/v1/networks/prod/uplink");
    assert.equal(TUNNEL_ROUTE, "/v1/networks/:network/tunnel");
    assert.equal(UPLINK_ROUTE, "/v1/networks/:network/uplink");
  });

  it("escapes a name that is not a path segment, and reads it back from the path", () => {
    assert.equal(tunnelPath("a/b c"), "/v1/networks/a%2Fb%20c/tunnel");
    assert.equal(networkInPath(tunnelPath("a/b c")), "a/b c");
    assert.equal(networkInPath("/v1/networks/edge"), "edge");
    assert.equal(networkInPath("/v1/networks/edge/nodes/x"), "edge");
    assert.equal(networkInPath("/v1/networks"), undefined);
    assert.equal(networkInPath("/v1/networks/"), undefined);
    assert.equal(networkInPath("/v2/networks/edge"), undefined);
    assert.equal(networkInPath("/v1/networks/%E0%A4%A"), undefined, "malformed escape");
  });
});

describe("join tokens", () => {
  it("reads what it writes, splitting at the first dot", () => {
    const token = formatJoinToken("edge-1", "s3cr.et");
    assert.equal(token, "edge-1.s3cr.et");
    assert.deepEqual(parseJoinToken(token), { network: "edge-1", secret: "s3cr.et" });
  });

  it("refuses tokens without both a network and a secret", () => {
    for (const bad of ["", "nodot", ".secret", "network.", "."]) {
      assert.equal(parseJoinToken(bad), undefined, bad);
    }
  });
});

describe("network names", () => {
  it("accepts 1-63 lower-case letters, digits and '-', starting with a letter or digit", () => {
    for (const good of ["a", "0", "edge-1", "a".repeat(63)]) {
      assert.equal(validateNetworkName(good), good);
      assert.equal(isNetworkName(good), true);
    }
  });

  it("refuses anything else with an error that says what is allowed", () => {
    for (const bad of ["", "-a", "A", "a.b", "a_b", "a".repeat(64), "a/b", "é"]) {
      assert.equal(isNetworkName(bad), false, bad);
      assert.throws(
        () => validateNetworkName(bad),
        (error: unknown) => {
          assert.ok(error instanceof SideroLinkError);
          assert.equal(
            error.message,
            `network name: ${JSON.stringify(bad)} is not allowed: use 1-63 lower-case letters, digits and '-', starting with a letter or digit`,
          );
          return true;
        },
      );
    }
  });
});

describe("peer address values", () => {
  it("reduces [addr]:port and a bare address to canonical address text", () => {
    assert.equal(
      canonicalPeerAddress("[fdae:41e4:649b:9304:0:0:0:2]:50888"),
      "fdae:41e4:649b:9304::2",
    );
    assert.equal(canonicalPeerAddress("FDAE:41E4:649B:9304::2"), "fdae:41e4:649b:9304::2");
  });

  it("is undefined for anything else", () => {
    for (const bad of ["", "fdae::2:50888", "[fdae::2]", "[fdae::2]:0", "10.0.0.1", "[zz::1]:1"]) {
      assert.equal(canonicalPeerAddress(bad), undefined, bad);
    }
  });
});
