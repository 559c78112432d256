/**
 * Provision waits for the management server's uplink to confirm a new peer; when it does not
 * (no ACK in time, or the uplink goes away while the relay waits), the node is told Unavailable
 * with what to check, never an answer it cannot use.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { FrameType } from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";
import { base64, createNetwork, randomKey, startRelay, tempDir, Uplink } from "./helpers.ts";

async function expectCode(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `code ${Code[error.code]}: ${error.rawMessage}`);
    assert.match(error.rawMessage, message);
    return true;
  });
}

describe("Provision when the uplink does not confirm the peer", () => {
  const client = (relay: RelayServer) =>
    createClient(ProvisionService, createGrpcWebTransport({ baseUrl: relay.url }));

  /** A relay whose uplinks wait `ackTimeoutMs` for ACKs, a network, and an uplink that never ACKs. */
  async function silentUplink(ackTimeoutMs: number) {
    const relayDir = tempDir();
    const relay = await startRelay(relayDir.path, { hubLimits: { ackTimeoutMs } });
    const network = await createNetwork(relay, "quiet");
    const silent = new Uplink(relay, "quiet", network.uplinkSecret);
    silent.autoAck = false;
    await silent.ready();
    const stop = async () => {
      silent.close();
      await relay.close();
      relayDir.remove();
    };
    return { relay, token: network.joinToken!, silent, stop };
  }

  test("an uplink that never ACKs: Unavailable, saying what to check", async () => {
    const lab = await silentUplink(200);
    try {
      await expectCode(
        client(lab.relay).provision({
          nodeUuid: "00000000-0000-4000-8000-0000000000a1",
          nodePublicKey: base64(randomKey()),
          joinToken: lab.token,
        }),
        Code.Unavailable,
        /^the management server did not confirm the new peer in time; check that siderolink-sidecar serve is running for network "quiet" and try again$/,
      );
      assert.ok(
        lab.silent.control.some((m) => m.type === FrameType.PeerAdded),
        "the uplink was told about the peer",
      );
    } finally {
      await lab.stop();
    }
  });

  test("an uplink that closes while the relay waits: Unavailable, saying what to check", async () => {
    // The wait outlasts the test: only the uplink's going can end it.
    const lab = await silentUplink(600_000);
    try {
      const call = client(lab.relay).provision({
        nodeUuid: "00000000-0000-4000-8000-0000000000a2",
        nodePublicKey: base64(randomKey()),
        joinToken: lab.token,
      });
      await eventually("PEER_ADDED at the uplink", () =>
        lab.silent.control.find((m) => m.type === FrameType.PeerAdded),
      );
      lab.silent.close();
      await expectCode(
        call,
        Code.Unavailable,
        /^the management server's uplink closed before it confirmed the new peer; check that siderolink-sidecar serve is running for network "quiet" and try again$/,
      );
    } finally {
      await lab.stop();
    }
  });
});
