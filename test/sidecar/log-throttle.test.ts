import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LogThrottle } from "../../sidecar/log-throttle.ts";

describe("LogThrottle", () => {
  it("admits a source once per interval and reports how many it held back", () => {
    const clock = { now: 0 };
    const throttle = new LogThrottle({ intervalMs: 1_000, maxSources: 8, now: () => clock.now });
    assert.equal(throttle.admit("a"), 0);
    assert.equal(throttle.admit("a"), undefined);
    assert.equal(throttle.admit("b"), 0, "sources are apart");
    clock.now = 999;
    assert.equal(throttle.admit("a"), undefined);
    clock.now = 1_000;
    assert.equal(throttle.admit("a"), 2);
    assert.equal(throttle.admit("a"), undefined);
  });

  it("remembers at most maxSources, forgetting the one logged longest ago", () => {
    const throttle = new LogThrottle({ intervalMs: 60_000, maxSources: 2, now: () => 0 });
    throttle.admit("a");
    throttle.admit("b");
    assert.equal(throttle.admit("a"), undefined);
    throttle.admit("c");
    // a was logged before b, so a is the one forgotten; b and c stay held back.
    assert.equal(throttle.admit("b"), undefined);
    assert.equal(throttle.admit("c"), undefined);
    assert.equal(throttle.admit("a"), 0);
  });
});
