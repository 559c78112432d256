/**
 * The end-to-end suite with the relay on Node (plain gRPC over HTTP/2 for node-a, WebSocket for
 * node-b), plus a Talos machine built from @grpc/grpc-js that exchanges a real WireGuard
 * handshake with the server sidecar through the relay.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { nodeBinary } from "../sidecar/support/cli.ts";
import { describeEndToEnd } from "./support/suite.ts";
import { Links, nodeUuid, talosMachineFixture } from "./support/topology.ts";

interface MachineReport {
  publicKey: string;
  nodeAddressPrefix: string;
  serverAddress: string;
  serverPublicKey: string;
  serverEndpoint: string[];
  grpcPeerAddrPort: string;
  responseType: number;
  responseLength: number;
  responseReceiverIndex: number;
  senderIndex: number;
  responseAuthenticated: boolean;
  sessionKeys: boolean;
}

describeEndToEnd("node", (get) => {
  it("a Talos machine on @grpc/grpc-js: Provision with wireguard_over_grpc, CreateStream, handshake answered by the server", async () => {
    const { topology, relay, nodes, serverIface } = get();
    const { stdout } = await topology.nodes["node-b"].run(
      nodeBinary,
      [talosMachineFixture, `${Links["node-b"].edge}:8787`, relay.info.joinToken, nodeUuid()],
      { timeoutMs: 60_000 },
    );
    const machine = JSON.parse(stdout) as MachineReport;
    const serverKey = (await topology.status(nodes["node-a"].iface)).peers[0].publicKey;
    assert.equal(machine.serverPublicKey, serverKey, "the server sidecar's key");
    assert.equal(machine.serverAddress, relay.info.serverAddress);
    assert.match(machine.grpcPeerAddrPort, /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:50888$/);
    assert.deepEqual(machine.serverEndpoint, [machine.grpcPeerAddrPort]);
    const prefix = relay.info.serverAddress.replace(/::1$/, ":");
    assert.ok(
      machine.nodeAddressPrefix.startsWith(prefix) && machine.nodeAddressPrefix.endsWith("/64"),
      `node address ${machine.nodeAddressPrefix} in the network's /64`,
    );
    assert.equal(machine.responseType, 2, "a handshake response (type 2)");
    assert.equal(machine.responseLength, 92);
    assert.equal(machine.responseReceiverIndex, machine.senderIndex, "answering our initiation");
    assert.equal(machine.responseAuthenticated, true, "authenticated with the server's static key");
    assert.equal(machine.sessionKeys, true, "transport keys derived");
    // The machine's keepalive completed the handshake on the server's side too.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const server = await topology.status(serverIface);
      const peer = server.peers.find((p) => p.publicKey === machine.publicKey);
      assert.ok(peer, "the server sidecar has the machine as a peer");
      if (peer.lastHandshakeAgeSeconds !== null) break;
      assert.ok(Date.now() < deadline, "the server never completed the machine's handshake");
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });
});
