/**
 * Link monitoring with Talos's numbers: 275 s without a handshake moves to the next endpoint,
 * and past the last one asks for a new Provision; each endpoint gets its own 275 s.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EndpointCycle, handshakeAgeSeconds, handshakeFresh } from "../../sidecar/monitor.ts";

const s = 1000;

describe("EndpointCycle", () => {
  it("keeps a link whose handshake is younger than 275 s", () => {
    const cycle = new EndpointCycle(["a:1"], 0);
    assert.deepEqual(cycle.check(274.999 * s, 0), { kind: "ok" }, "grace period from the start");
    assert.deepEqual(cycle.check(400 * s, 200 * s), { kind: "ok" });
  });

  it("moves through the endpoints at 275 s each, then asks to provision again", () => {
    const cycle = new EndpointCycle(["a:1", "b:2", "c:3"], 0);
    assert.deepEqual(cycle.check(275 * s, 0), { kind: "next-endpoint", endpoint: "b:2" });
    assert.equal(cycle.current, "b:2");
    assert.deepEqual(cycle.check(500 * s, 0), { kind: "ok" }, "the new endpoint has its own 275 s");
    assert.deepEqual(cycle.check(550 * s, 0), { kind: "next-endpoint", endpoint: "c:3" });
    assert.deepEqual(cycle.check(824 * s, 0), { kind: "ok" });
    assert.deepEqual(cycle.check(825 * s, 0), { kind: "reprovision" });
  });

  it("a tunnel has one endpoint: a dead link goes straight to provisioning", () => {
    const cycle = new EndpointCycle(["[fdae:41e4:649b:9304::5]:50888"], 1000 * s);
    assert.deepEqual(cycle.check(1100 * s, 1050 * s), { kind: "ok" });
    assert.deepEqual(cycle.check(1325 * s, 1050 * s), { kind: "reprovision" });
  });

  it("refuses an empty endpoint list", () => {
    assert.throws(() => new EndpointCycle([], 0), /at least one endpoint/);
  });
});

describe("handshake age", () => {
  it("is null before the first handshake and whole seconds after", () => {
    assert.equal(handshakeAgeSeconds(10 * s, 0), null);
    assert.equal(handshakeAgeSeconds(10_999, 1000), 9);
    assert.equal(handshakeFresh(10 * s, 0), false);
    assert.equal(handshakeFresh(275 * s - 1, 1), true);
    assert.equal(handshakeFresh(276 * s, 1 * s), false);
  });
});
