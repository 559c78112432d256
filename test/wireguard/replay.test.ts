import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CounterLimit } from "../../shared/wireguard/constants.ts";
import { ReplayFilter, WindowSize } from "../../shared/wireguard/replay.ts";

/** Expected outcomes follow RFC 6479's rules: each counter once, none older than the window. */
describe("replay filter", () => {
  it("accepts each counter once: duplicates are refused", () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(0, CounterLimit), true);
    assert.equal(filter.validate(0, CounterLimit), false);
    assert.equal(filter.validate(1, CounterLimit), true);
    assert.equal(filter.validate(1, CounterLimit), false);
  });

  it("accepts out-of-order counters inside the window, once", () => {
    const filter = new ReplayFilter();
    for (const counter of [10, 5, 9, 1, 6])
      assert.equal(filter.validate(counter, CounterLimit), true);
    for (const counter of [10, 5, 9, 1, 6])
      assert.equal(filter.validate(counter, CounterLimit), false);
    assert.equal(filter.validate(7, CounterLimit), true);
  });

  it("window edges: exactly WindowSize behind is accepted, one more is too old", () => {
    const filter = new ReplayFilter();
    const newest = WindowSize + 100;
    assert.equal(filter.validate(newest, CounterLimit), true);
    assert.equal(filter.validate(newest - WindowSize, CounterLimit), true);
    assert.equal(filter.validate(newest - WindowSize - 1, CounterLimit), false);
    assert.equal(filter.validate(newest - 1, CounterLimit), true);
  });

  it("a jump far ahead clears the ring: old bits do not mark new counters as seen", () => {
    const filter = new ReplayFilter();
    for (let counter = 0; counter < 300; counter++)
      assert.equal(filter.validate(counter, CounterLimit), true);
    const jump = 300 + 8192 * 3;
    assert.equal(filter.validate(jump, CounterLimit), true);
    // Same ring slots as 0..299 before the jump: must read as unseen.
    for (let back = 1; back < 300; back++)
      assert.equal(filter.validate(jump - back, CounterLimit), true);
    assert.equal(filter.validate(299, CounterLimit), false, "far behind the window now");
  });

  it("refuses counters at or beyond the limit", () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(99, 100), true);
    assert.equal(filter.validate(100, 100), false);
    assert.equal(filter.validate(CounterLimit, CounterLimit), false);
    assert.equal(filter.validate(CounterLimit - 1, CounterLimit), true);
  });
});
