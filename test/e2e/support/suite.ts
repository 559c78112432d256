/**
 * The end-to-end promise, run once per relay runtime with the same assertions: machines whose
 * networks drop UDP join a SideroLink network through the relay and reach the management host
 * over it, and the link survives the relay, the node and the server restarting.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LabProcess, Netns } from "../../netns/netns.ts";
import { runCli } from "../../sidecar/support/cli.ts";
import { eventually } from "../../support/eventually.ts";
import {
  createTopology,
  Links,
  NetworkName,
  type NodeName,
  type NodeOptions,
  nodeUuid,
  type Relay,
  type RelayKind,
  type Topology,
} from "./topology.ts";
import { MiB, ping, pingUntilReply, startTransfer, transfer } from "./traffic.ts";
import { plainWireGuard } from "./udp-block.ts";

const suffix = String(process.pid % 100000);
const TransferBytes = 64 * MiB;

/** The node's `starting` log line: its public key for this run of the process. */
function startingKey(process: LabProcess): string {
  const keys = [...process.output().matchAll(/"msg":"starting".*?"publicKey":"([^"]+)"/g)];
  assert.ok(keys.length > 0, `no starting line with a publicKey in:\n${process.output()}`);
  return keys[keys.length - 1][1];
}

export function describeEndToEnd(kind: RelayKind, extra?: (context: () => Context) => void): void {
  describe(`end to end through the ${kind === "node" ? "Node" : "Worker (workerd, HTTPS)"} relay`, {
    timeout: 600_000,
  }, () => {
    const context = {} as Context;
    before(async () => {
      Object.assign(context, await setUp(kind));
    });
    after(async () => {
      await context.topology?.close();
    });
    defineAssertions(() => context);
    extra?.(() => context);
  });
}

export interface Context {
  topology: Topology;
  relay: Relay;
  server: LabProcess;
  serverIface: string;
  nodes: Record<NodeName, { process: LabProcess; iface: string; options: NodeOptions }>;
}

const NodeBackends: Record<NodeName, "userspace" | "kernel"> = {
  "node-a": "userspace",
  "node-b": "kernel",
};

async function setUp(kind: RelayKind): Promise<Context> {
  const topology = await createTopology(kind === "node" ? "e2n" : "e2w");
  try {
    const relay = await topology.startRelay(kind);
    const serverIface = `sm${suffix}`;
    const server = topology.startServer(relay, serverIface);
    await server.waitFor(/"msg":"ready"/, 30_000);
    const nodes = {} as Context["nodes"];
    for (const name of ["node-a", "node-b"] as const) {
      const iface = `${name === "node-a" ? "sa" : "sb"}${suffix}`;
      const options: NodeOptions = {
        backend: NodeBackends[name],
        nodeUuid: nodeUuid(),
        // On the Node relay node-a takes the gRPC CreateStream tunnel (auto for grpc://) and
        // node-b the WebSocket one; the Worker serves WebSockets only.
        transport: name === "node-b" ? "websocket" : "auto",
      };
      nodes[name] = { process: topology.startNode(relay, name, iface, options), iface, options };
    }
    for (const node of Object.values(nodes)) await node.process.waitFor(/"msg":"ready"/, 60_000);
    return { topology, relay, server, serverIface, nodes };
  } catch (error) {
    await topology.close();
    throw error;
  }
}

/** Rejects as `work` does, with `trail()` added to the message: what the failure needs explained. */
async function explained<T>(work: Promise<T>, trail: () => Promise<string>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw new Error(`${String(error)}\n${await trail()}`, { cause: error });
  }
}

/** A restarted node's log, the server's since the restart, and both ends' WireGuard state. */
async function restartTrail(c: Context, name: NodeName, serverSince: number): Promise<string> {
  // Every wg socket in /var/run/wireguard is listed from any namespace; kernel ones only from
  // their own.
  const wgShow = (ns: Netns) =>
    ns.run("wg", ["show", "all", "dump"]).then(
      ({ stdout }) => stdout,
      (error: Error) => error.message,
    );
  return [
    `${name} log since its restart:`,
    c.nodes[name].process.output(),
    "server log since the restart:",
    c.server.output().slice(serverSince),
    `${name} wg:`,
    await wgShow(c.topology.nodes[name]),
    "server wg:",
    await wgShow(c.topology.mgmt),
  ].join("\n");
}

async function nodeAddress(c: Context, name: NodeName): Promise<string> {
  const status = await c.topology.status(c.nodes[name].iface);
  assert.ok(status.addresses.local, `${name} has no overlay address: ${JSON.stringify(status)}`);
  return status.addresses.local.split("/")[0];
}

function defineAssertions(get: () => Context): void {
  it("the UDP block is real: plain WireGuard over UDP handshakes from mgmt but not from a node", async () => {
    const { topology } = get();
    const control = await plainWireGuard(
      topology.work,
      topology.edge,
      Links.mgmt.edge,
      topology.mgmt,
      `${suffix}m`,
    );
    assert.equal(control.reached, true, "wireguard-go over UDP works where UDP passes");
    assert.ok(control.latestHandshake > 0);
    const blocked = await plainWireGuard(
      topology.work,
      topology.edge,
      Links["node-a"].edge,
      topology.nodes["node-a"],
      `${suffix}a`,
    );
    assert.equal(blocked.reached, false, "no WireGuard over UDP from behind the firewall");
    assert.equal(blocked.latestHandshake, 0, "not even a handshake");
  });

  it("ping6 from each node to the server's overlay address and back (TypeScript device and wireguard-go)", async () => {
    const c = get();
    const serverAddress = c.relay.info.serverAddress;
    for (const name of ["node-a", "node-b"] as const) {
      const ns = c.topology.nodes[name];
      await pingUntilReply(ns, serverAddress);
      const address = await nodeAddress(c, name);
      await pingUntilReply(c.topology.mgmt, address);
      const forth = await ping(ns, serverAddress, 5);
      const back = await ping(c.topology.mgmt, address, 5);
      assert.equal(
        forth.received,
        forth.transmitted,
        `${name} to server: ${JSON.stringify(forth)}`,
      );
      assert.equal(back.received, back.transmitted, `server to ${name}: ${JSON.stringify(back)}`);
      const status = await c.topology.status(c.nodes[name].iface);
      assert.equal(status.backend, NodeBackends[name]);
      assert.equal(status.up, true);
      assert.equal(status.addresses.server, serverAddress);
      const expectedKind = name === "node-b" || c.relay.kind === "worker" ? "websocket" : "grpc";
      assert.equal(status.transport.kind, expectedKind);
    }
    const serverStatus = await c.topology.status(c.serverIface);
    assert.equal(serverStatus.role, "server");
    assert.equal(serverStatus.peers.length, 2, "the server has one peer per node");
  });

  it(`${TransferBytes / MiB} MiB over TCP node to server and server to node, SHA-256 equal`, async () => {
    const c = get();
    const nodeNs = c.topology.nodes["node-a"];
    const address = await nodeAddress(c, "node-a");
    const up = await transfer(
      nodeNs,
      c.topology.mgmt,
      c.relay.info.serverAddress,
      5201,
      TransferBytes,
    );
    const down = await transfer(c.topology.mgmt, nodeNs, address, 5202, TransferBytes);
    for (const result of [up, down]) {
      assert.equal(result.bytesReceived, TransferBytes);
      assert.equal(result.receivedSha256, result.sentSha256);
    }
  });

  it("the wireguard-go node carries TCP both ways too, SHA-256 equal", async () => {
    const c = get();
    const nodeNs = c.topology.nodes["node-b"];
    const address = await nodeAddress(c, "node-b");
    const bytes = 8 * MiB;
    const up = await transfer(nodeNs, c.topology.mgmt, c.relay.info.serverAddress, 5203, bytes);
    const down = await transfer(c.topology.mgmt, nodeNs, address, 5204, bytes);
    for (const result of [up, down]) {
      assert.equal(result.bytesReceived, bytes);
      assert.equal(result.receivedSha256, result.sentSha256);
    }
  });

  it("node-a cannot reach node-b over the overlay, nor node-b node-a (point to point only)", async () => {
    const c = get();
    const a = await nodeAddress(c, "node-a");
    const b = await nodeAddress(c, "node-b");
    const aToB = await ping(c.topology.nodes["node-a"], b, 3);
    const bToA = await ping(c.topology.nodes["node-b"], a, 3);
    assert.equal(aToB.received, 0, "node-a reached node-b");
    assert.equal(bToA.received, 0, "node-b reached node-a");
    // The server reaches both at the same moment, so the overlay itself is up.
    assert.equal((await ping(c.topology.mgmt, a, 2)).received, 2);
    assert.equal((await ping(c.topology.mgmt, b, 2)).received, 2);
  });

  it("the relay killed and restarted during a transfer: the transfer completes intact, no re-provision", async () => {
    const c = get();
    const iface = c.nodes["node-a"].iface;
    const before = {
      "node-a": await c.topology.status(c.nodes["node-a"].iface),
      "node-b": await c.topology.status(c.nodes["node-b"].iface),
    };
    const key = startingKey(c.nodes["node-a"].process);
    const servedBefore = okProvisions(await c.relay.admin(`/v1/networks/${NetworkName}/metrics`));
    assert.ok(servedBefore > 0, "the relay counts the Provision calls it served");
    const marks = {
      "node-a": c.nodes["node-a"].process.output().length,
      "node-b": c.nodes["node-b"].process.output().length,
    };
    const bytes = 32 * MiB;
    const running = await startTransfer(
      c.topology.nodes["node-a"],
      c.topology.mgmt,
      c.relay.info.serverAddress,
      5205,
      bytes,
      { mbit: 40, timeoutMs: 180_000 },
    );
    await running.receiver.waitFor(/^progress /, 30_000);
    await c.relay.kill();
    await eventually(
      "node-a to see the relay gone",
      async () => {
        const status = await c.topology.status(iface);
        return status.transport.state !== "connected" ? status : undefined;
      },
      30_000,
      250,
    );
    await c.relay.restart();
    const result = await running.done;
    assert.equal(result.bytesReceived, bytes);
    assert.equal(result.receivedSha256, result.sentSha256, "the bytes arrived intact");

    for (const name of ["node-a", "node-b"] as const) {
      const after = await eventually(
        `${name} reconnected`,
        async () => {
          const status = await c.topology.status(c.nodes[name].iface);
          return status.transport.state === "connected" && status.up ? status : undefined;
        },
        60_000,
        250,
      );
      const was = before[name];
      assert.equal(after.pid, was.pid, `${name}: the same sidecar process`);
      assert.ok(after.transport.connects > was.transport.connects, `${name} reconnected by itself`);
      assert.equal(after.addresses.local, was.addresses.local, `${name}: same overlay address`);
      assert.equal(after.addresses.virtual, was.addresses.virtual, `${name}: same virtual address`);
    }
    for (const name of ["node-a", "node-b"] as const) {
      const log = c.nodes[name].process.output().slice(marks[name]);
      assert.doesNotMatch(log, /provisioning again|"msg":"starting"/, `no Provision from ${name}`);
    }
    const nodesAfter = JSON.parse(await c.relay.admin(`/v1/networks/${NetworkName}/nodes`))
      .nodes as {
      publicKey: string;
      address: string;
    }[];
    const mine = nodesAfter.find((node) => node.publicKey === key);
    assert.equal(
      mine?.address,
      before["node-a"].addresses.local?.split("/")[0],
      "the relay kept node-a's key and address",
    );
    // The Node relay counts from zero after a restart; a Durable Object keeps its counters.
    assert.equal(
      okProvisions(await c.relay.admin(`/v1/networks/${NetworkName}/metrics`)),
      c.relay.kind === "node" ? 0 : servedBefore,
      "the restarted relay served no Provision",
    );
    // The server's uplink came back by itself as well.
    const server = await eventually(
      "the server's uplink back",
      async () => {
        const status = await c.topology.status(c.serverIface);
        return status.up && status.transport.connects >= 2 ? status : undefined;
      },
      60_000,
      250,
    );
    assert.equal(server.peers.length, 2);
    await pingUntilReply(c.topology.nodes["node-b"], c.relay.info.serverAddress);
  });

  it("a bad join token: the node sidecar exits 6 saying the relay refused it", async () => {
    const c = get();
    const args = c.topology.joinArgs(c.relay, "node-b", `sx${suffix}`, {
      backend: "userspace",
      nodeUuid: nodeUuid(),
      joinToken: "edge.not-the-secret",
    });
    const result = await runCli([...args, "--connect-timeout", "10"], {
      netns: c.topology.nodes["node-b"].name,
    });
    assert.equal(result.code, 6, result.stderr);
    assert.match(result.stderr, /the relay refused the join token/);
  });

  it("each node sidecar stopped and started with its state three times in a row: a new key each time, the same overlay address, back at once on its transport", async () => {
    const c = get();
    for (const name of ["node-a", "node-b"] as const) {
      const node = c.nodes[name];
      const before = await c.topology.status(node.iface);
      const keys = [startingKey(node.process)];
      for (let round = 1; round <= 3; round++) {
        const serverSince = c.server.output().length;
        await node.process.stop(10_000);
        assert.equal(node.process.child.exitCode, 0, node.process.output());
        node.process = c.topology.startNode(c.relay, name, node.iface, node.options);
        await node.process.waitFor(/"msg":"ready"/, 60_000);
        const key = startingKey(node.process);
        assert.ok(
          !keys.includes(key),
          `${name} round ${round}: a new WireGuard key, as Talos makes at every boot`,
        );
        keys.push(key);
        const after = await c.topology.status(node.iface);
        assert.notEqual(after.pid, before.pid);
        assert.equal(
          after.addresses.local,
          before.addresses.local,
          `${name} round ${round}: the same overlay address`,
        );
        // The relay ended the old key's stream only: the new one carries the handshake.
        await explained(
          pingUntilReply(c.topology.nodes[name], c.relay.info.serverAddress, 10),
          () => restartTrail(c, name, serverSince),
        );
        await explained(
          pingUntilReply(c.topology.mgmt, after.addresses.local!.split("/")[0], 10),
          () => restartTrail(c, name, serverSince),
        );
        const status = await c.topology.status(node.iface);
        assert.equal(status.transport.state, "connected", `${name} round ${round}`);
        // The first handshake initiation goes out as soon as WireGuard has the peer; had it
        // found no transport to hold it, the handshake would wait for WireGuard's retry.
        assert.equal(
          status.drops.tunnelNotConnected,
          0,
          `${name} round ${round}: nothing WireGuard sent was lost for want of a stream`,
        );
        assert.equal(
          status.transport.connects,
          1,
          `${name} round ${round}: its first stream stayed`,
        );
      }
      const nodes = JSON.parse(await c.relay.admin(`/v1/networks/${NetworkName}/nodes`)).nodes as {
        publicKey: string;
      }[];
      assert.ok(nodes.some((n) => n.publicKey === keys.at(-1)));
      for (const old of keys.slice(0, -1))
        assert.ok(
          !nodes.some((n) => n.publicKey === old),
          `${name}: old key ${old} gone from the relay`,
        );
    }
  });

  it("no server connected: a new node is told Unavailable; the server restarted restores its peers", async () => {
    const c = get();
    const addresses = [await nodeAddress(c, "node-a"), await nodeAddress(c, "node-b")].sort();
    await c.server.stop(10_000);
    assert.equal(c.server.child.exitCode, 0, c.server.output());

    const args = c.topology.joinArgs(c.relay, "node-b", `su${suffix}`, {
      backend: "userspace",
      nodeUuid: nodeUuid(),
    });
    const result = await runCli([...args, "--connect-timeout", "4"], {
      netns: c.topology.nodes["node-b"].name,
    });
    assert.equal(result.code, 7, result.stderr);
    assert.match(
      result.stderr,
      /Unavailable: the management server is not connected to the relay for network "edge"/,
    );

    c.server = c.topology.startServer(c.relay, c.serverIface);
    await c.server.waitFor(/"msg":"ready"/, 30_000);
    const status = await eventually(
      "the server's peers back",
      async () => {
        const s = await c.topology.status(c.serverIface);
        return s.peers.length === 2 ? s : undefined;
      },
      30_000,
      250,
    );
    assert.deepEqual(status.peers.map((peer) => peer.address).sort(), addresses);
    for (const name of ["node-a", "node-b"] as const) {
      await pingUntilReply(c.topology.nodes[name], c.relay.info.serverAddress, 60);
      await pingUntilReply(c.topology.mgmt, await nodeAddress(c, name));
    }
  });
}

/** The relay's count of Provision calls answered OK, from its Prometheus text (0 when absent). */
function okProvisions(metrics: string): number {
  const match = /^siderolink_relay_provisions_total\{code="ok"\} (\d+)/m.exec(metrics);
  return match ? Number(match[1]) : 0;
}
