import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  COUNTER_LIMIT,
  INITIATION_MAC1,
  INITIATION_MAC2,
  isWellFormedMessage,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
  mac1Offset,
  mac2Offset,
  REJECT_AFTER_MESSAGES,
  REKEY_AFTER_MESSAGES,
  RESPONSE_MAC1,
  RESPONSE_MAC2,
} from "../../shared/wireguard/constants.ts";

const message = (type: number, length: number): Uint8Array => {
  const out = new Uint8Array(length);
  out[0] = type;
  return out;
};

describe("constants", () => {
  it("message counters: the number limit is below the paper's REJECT_AFTER_MESSAGES", () => {
    assert.equal(REJECT_AFTER_MESSAGES, 18446744073709543423n);
    assert.equal(REKEY_AFTER_MESSAGES, Number(2n ** 60n));
    assert.ok(BigInt(COUNTER_LIMIT) < REJECT_AFTER_MESSAGES);
    assert.ok(Number.isSafeInteger(COUNTER_LIMIT - 1));
  });

  it("MAC offsets agree with the documented layouts", () => {
    assert.equal(mac1Offset(MESSAGE_INITIATION_SIZE), INITIATION_MAC1);
    assert.equal(mac2Offset(MESSAGE_INITIATION_SIZE), INITIATION_MAC2);
    assert.equal(mac1Offset(MESSAGE_RESPONSE_SIZE), RESPONSE_MAC1);
    assert.equal(mac2Offset(MESSAGE_RESPONSE_SIZE), RESPONSE_MAC2);
  });

  it("isWellFormedMessage: types 1-4 with their lengths and zero reserved bytes", () => {
    assert.equal(isWellFormedMessage(message(1, 148)), true);
    assert.equal(isWellFormedMessage(message(1, 147)), false);
    assert.equal(isWellFormedMessage(message(2, 92)), true);
    assert.equal(isWellFormedMessage(message(2, 93)), false);
    assert.equal(isWellFormedMessage(message(3, 64)), true);
    assert.equal(isWellFormedMessage(message(3, 65)), false);
    assert.equal(isWellFormedMessage(message(4, 32)), true);
    assert.equal(isWellFormedMessage(message(4, 1500)), true);
    assert.equal(isWellFormedMessage(message(4, 31)), false);
    assert.equal(isWellFormedMessage(message(4, 65536)), false);
    assert.equal(isWellFormedMessage(message(5, 148)), false);
    assert.equal(isWellFormedMessage(message(0, 148)), false);
    assert.equal(isWellFormedMessage(new Uint8Array(0)), false);
    const reserved = message(1, 148);
    reserved[2] = 1;
    assert.equal(isWellFormedMessage(reserved), false);
  });
});
