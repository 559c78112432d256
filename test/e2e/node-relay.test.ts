/**
 * The end-to-end suite with the relay on Node (plain gRPC over HTTP/2 for node-a, WebSocket for
 * node-b), plus a Talos machine built from @grpc/grpc-js that exchanges a real WireGuard
 * handshake with the server sidecar through the relay.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { nodeBinary } from "../sidecar/support/cli.ts";
import { eventually } from "../support/eventually.ts";
import { describeEndToEnd } from "./support/suite.ts";
import {
  Links,
  NetworkName,
  type NodeOptions,
  nodeUuid,
  talosMachineFixture,
} from "./support/topology.ts";
import { pingUntilReply } from "./support/traffic.ts";

const provisionLoopFixture = fileURLToPath(
  new URL("./fixtures/talos-provision-loop.ts", import.meta.url),
);
const suffix = String(process.pid % 100000);

interface Outcome {
  code: number;
  details: string;
}

/** The Provision outcomes the loop fixture has printed so far. */
function outcomes(output: string): Outcome[] {
  return output
    .split("\n")
    .filter((line) => line.startsWith('{"code"'))
    .map((line) => JSON.parse(line) as Outcome);
}

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

  it("a revoked Talos machine stays out: its retries are PermissionDenied until an operator admits it", async () => {
    const { topology, relay } = get();
    const uuid = nodeUuid();
    const machine = topology.nodes["node-b"].spawn(nodeBinary, [
      provisionLoopFixture,
      `${Links["node-b"].edge}:8787`,
      relay.info.joinToken,
      uuid,
      "talos-unique-token",
      "200",
    ]);
    try {
      await machine.waitFor(/^\{"code":0,/, 30_000);
      await relay.admin(`/v1/networks/${NetworkName}/nodes/${uuid}`, "DELETE");
      const revokedAt = outcomes(machine.output()).length;
      // Several retries, all refused, saying why and what lets it in again.
      const refused = await eventually("three refused retries", () => {
        const since = outcomes(machine.output()).slice(revokedAt + 1);
        return since.length >= 3 ? since : undefined;
      });
      for (const outcome of refused) {
        assert.equal(outcome.code, 7, `PermissionDenied: ${JSON.stringify(outcome)}`);
        assert.match(
          outcome.details,
          new RegExp(`revoked by the operator.*node admit ${NetworkName} ${uuid}`),
        );
      }
      await relay.admin(`/v1/networks/${NetworkName}/nodes/${uuid}/admit`, "POST");
      const admittedAt = outcomes(machine.output()).length;
      await eventually("an answer after the admission", () =>
        outcomes(machine.output())
          .slice(admittedAt)
          .some((o) => o.code === 0),
      );
    } finally {
      await machine.stop();
    }
  });

  it("a revoked node sidecar stays out on both transports until admitted, then comes back by itself; a fresh start while revoked is refused", async () => {
    const { topology, relay, nodes } = get();
    const ns = topology.nodes["node-b"];
    for (const transport of ["grpc", "websocket"] as const) {
      const iface = `r${transport[0]}${suffix}`;
      const options: NodeOptions = {
        backend: "userspace",
        nodeUuid: nodeUuid(),
        transport,
        state: `state-revoke-${transport}`,
      };
      const running = topology.startNode(relay, "node-b", iface, options);
      try {
        await running.waitFor(/"msg":"ready"/, 60_000);
        const before = await topology.status(iface);
        await relay.admin(`/v1/networks/${NetworkName}/nodes/${options.nodeUuid}`, "DELETE");
        // Running, it keeps asking as Talos does, and is refused every time.
        await running.waitFor(/failed; retrying.*revoked by the operator/, 60_000);
        await running.waitFor(/failed; retrying.*revoked by the operator/, 60_000);
        assert.equal(running.child.exitCode, null, `${transport}: still running`);
        // Started afresh while revoked (another interface, the same identity): refused at once.
        const fresh = topology.startNode(relay, "node-b", `f${transport[0]}${suffix}`, options);
        assert.equal((await fresh.exited).code, 6, `${transport}: refused\n${fresh.output()}`);
        assert.match(fresh.output(), /revoked by the operator/);

        await relay.admin(`/v1/networks/${NetworkName}/nodes/${options.nodeUuid}/admit`, "POST");
        const back = await eventually(
          `${transport}: the running sidecar back on a new address`,
          async () => {
            const status = await topology.status(iface);
            return status.addresses.local !== before.addresses.local &&
              status.transport.state === "connected"
              ? status
              : undefined;
          },
          90_000,
          500,
        );
        await pingUntilReply(topology.mgmt, back.addresses.local!.split("/")[0], 10);
        assert.equal(back.transport.kind, transport);
        assert.equal(back.pid, before.pid, "the same process, not a restart");
      } finally {
        await running.stop(10_000);
        // The sidecar routed the server's address to its own interface: give it back to node-b.
        await ns.run("ip", [
          "-6",
          "route",
          "replace",
          `${relay.info.serverAddress}/128`,
          "dev",
          nodes["node-b"].iface,
        ]);
      }
    }
  });
});
