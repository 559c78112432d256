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

  it("a stranger cycling source addresses gets maxSources + 1 lines an interval, not one each", () => {
    const clock = { now: 0 };
    const throttle = new LogThrottle({ intervalMs: 60_000, maxSources: 4, now: () => clock.now });
    let lines = 0;
    for (let i = 0; i < 5_000; i++)
      if (throttle.admit(`fd00::${i.toString(16)}`) !== undefined) lines++;
    assert.equal(lines, 5, "four sources of their own and one line the rest share");
    // A minute on, the shared line reports every one it held back.
    clock.now = 60_000;
    assert.equal(throttle.admit("fd00::ffff"), 0, "the stale sources make room for a new one");
    for (let i = 0; i < 3; i++) throttle.admit(`fd01::${i}`);
    assert.equal(throttle.admit("fd02::1"), 4_995, "the shared line, with all it held");
  });

  it("remembers a source logged inside the interval, and forgets one logged before it", () => {
    const clock = { now: 0 };
    const throttle = new LogThrottle({ intervalMs: 60_000, maxSources: 2, now: () => clock.now });
    throttle.admit("a");
    clock.now = 30_000;
    throttle.admit("b");
    assert.equal(throttle.admit("a"), undefined);
    clock.now = 70_000;
    // a was logged more than a minute ago: it makes room for c; b stays held back.
    assert.equal(throttle.admit("c"), 0);
    assert.equal(throttle.admit("b"), undefined);
    assert.equal(throttle.admit("a"), 0, "a is new again, its held line forgotten with it");
  });
});
