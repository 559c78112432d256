/**
 * The kernel plane's probe ledger with real handshake messages (two userspace devices): it pins
 * a peer only on a response that answers an initiation it copied for that peer, within its time,
 * once; a forged response (another receiver index, as an off-path sender must guess one) and a
 * response to an initiation it never copied name no one.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { MessageType } from "../../shared/wireguard/constants.ts";
import { LEDGER_TTL_MS, ProbeLedger } from "../../sidecar/mesh/probe-ledger.ts";
import { DevicePair } from "../wireguard/support/device-pair.ts";

describe("probe ledger", () => {
  const pair = new DevicePair();
  let initiation: Uint8Array;
  let response: Uint8Array;

  before(async () => {
    await pair.start();
    pair.handshake();
    const sent = pair.network.sent.flatMap((batch) => batch.datagrams);
    initiation = sent.find((datagram) => datagram[0] === MessageType.Initiation)!;
    response = sent.find((datagram) => datagram[0] === MessageType.Response)!;
    assert.ok(initiation && response, "the devices made a handshake");
  });
  after(() => pair.close());

  it("names the peer whose copied initiation the response answers, once", () => {
    const ledger = new ProbeLedger<string>();
    assert.equal(ledger.answered(response, 1_000), undefined, "nothing copied yet");
    ledger.note("b", initiation, 1_000);
    assert.equal(ledger.answered(initiation, 1_000), undefined, "an initiation answers nothing");
    assert.equal(ledger.answered(response, 1_500), "b");
    assert.equal(ledger.answered(response, 1_600), undefined, "the same response again");
  });

  it("refuses a forged response that names another initiation", () => {
    const ledger = new ProbeLedger<string>();
    ledger.note("b", initiation, 1_000);
    const forged = response.slice();
    forged[8] ^= 0x01;
    assert.equal(ledger.answered(forged, 1_000), undefined);
    const truncated = response.subarray(0, response.length - 1);
    assert.equal(ledger.answered(truncated, 1_000), undefined);
    assert.equal(ledger.answered(response, 1_000), "b", "the real one still counts");
  });

  it("lets a copied initiation be answered only for LEDGER_TTL_MS, and forgets a removed peer's", () => {
    const late = new ProbeLedger<string>();
    late.note("b", initiation, 1_000);
    assert.equal(late.answered(response, 1_000 + LEDGER_TTL_MS + 1), undefined);

    const removed = new ProbeLedger<string>();
    removed.note("b", initiation, 1_000);
    removed.forget("b");
    assert.equal(removed.answered(response, 1_000), undefined);

    const pruned = new ProbeLedger<string>();
    pruned.note("b", initiation, 1_000);
    const other = initiation.slice();
    other[4] ^= 0x01;
    pruned.note("c", other, 1_000 + LEDGER_TTL_MS + 1);
    assert.equal(pruned.size, 1, "the stale entry went when the next was noted");
  });
});
