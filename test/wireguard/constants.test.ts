import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CounterLimit,
  InitiationMac1,
  InitiationMac2,
  isWellFormedMessage,
  MessageInitiationSize,
  MessageResponseSize,
  mac1Offset,
  mac2Offset,
  RejectAfterMessages,
  RekeyAfterMessages,
  ResponseMac1,
  ResponseMac2,
} from "../../shared/wireguard/constants.ts";

const message = (type: number, length: number): Uint8Array => {
  const out = new Uint8Array(length);
  out[0] = type;
  return out;
};

describe("constants", () => {
  it("message counters: the number limit is below the paper's RejectAfterMessages", () => {
    assert.equal(RejectAfterMessages, 18446744073709543423n);
    assert.equal(RekeyAfterMessages, Number(2n ** 60n));
    assert.ok(BigInt(CounterLimit) < RejectAfterMessages);
    assert.ok(Number.isSafeInteger(CounterLimit - 1));
  });

  it("MAC offsets agree with the documented layouts", () => {
    assert.equal(mac1Offset(MessageInitiationSize), InitiationMac1);
    assert.equal(mac2Offset(MessageInitiationSize), InitiationMac2);
    assert.equal(mac1Offset(MessageResponseSize), ResponseMac1);
    assert.equal(mac2Offset(MessageResponseSize), ResponseMac2);
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
