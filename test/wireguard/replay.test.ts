import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { COUNTER_LIMIT } from "../../shared/wireguard/constants.ts";
import { ReplayFilter, WINDOW_SIZE } from "../../shared/wireguard/replay.ts";

/** Expected outcomes follow RFC 6479's rules: each counter once, none older than the window. */
describe("replay filter", () => {
  it("accepts each counter once: duplicates are refused", () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(0, COUNTER_LIMIT), true);
    assert.equal(filter.validate(0, COUNTER_LIMIT), false);
    assert.equal(filter.validate(1, COUNTER_LIMIT), true);
    assert.equal(filter.validate(1, COUNTER_LIMIT), false);
  });

  it("accepts out-of-order counters inside the window, once", () => {
    const filter = new ReplayFilter();
    for (const counter of [10, 5, 9, 1, 6])
      assert.equal(filter.validate(counter, COUNTER_LIMIT), true);
    for (const counter of [10, 5, 9, 1, 6])
      assert.equal(filter.validate(counter, COUNTER_LIMIT), false);
    assert.equal(filter.validate(7, COUNTER_LIMIT), true);
  });

  it("window edges: exactly WINDOW_SIZE behind is accepted, one more is too old", () => {
    const filter = new ReplayFilter();
    const newest = WINDOW_SIZE + 100;
    assert.equal(filter.validate(newest, COUNTER_LIMIT), true);
    assert.equal(filter.validate(newest - WINDOW_SIZE, COUNTER_LIMIT), true);
    assert.equal(filter.validate(newest - WINDOW_SIZE - 1, COUNTER_LIMIT), false);
    assert.equal(filter.validate(newest - 1, COUNTER_LIMIT), true);
  });

  it("a jump far ahead clears the ring: old bits do not mark new counters as seen", () => {
    const filter = new ReplayFilter();
    for (let counter = 0; counter < 300; counter++)
      assert.equal(filter.validate(counter, COUNTER_LIMIT), true);
    const jump = 300 + 8192 * 3;
    assert.equal(filter.validate(jump, COUNTER_LIMIT), true);
    // Same ring slots as 0..299 before the jump: must read as unseen.
    for (let back = 1; back < 300; back++)
      assert.equal(filter.validate(jump - back, COUNTER_LIMIT), true);
    assert.equal(filter.validate(299, COUNTER_LIMIT), false, "far behind the window now");
  });

  it("refuses counters at or beyond the limit", () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(99, 100), true);
    assert.equal(filter.validate(100, 100), false);
    assert.equal(filter.validate(COUNTER_LIMIT, COUNTER_LIMIT), false);
    assert.equal(filter.validate(COUNTER_LIMIT - 1, COUNTER_LIMIT), true);
  });
});
