/**
 * Point to point on the server host. A malicious node routes `::/0` through its SideroLink
 * interface (and lets WireGuard send anything to the server); the management host forwards
 * IPv6, as Kubernetes and Docker hosts commonly do. The server must still not carry that node's
 * packets to another node: it drops, on its own interface, what would go from one node to
 * another, with the userspace device (only packets from the server address leave it) and with
 * the kernel backend (an nftables forward rule). The victim node here accepts the whole network
 * prefix from the server, so that a packet that got through would be answered and counted.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LabProcess } from "../netns/netns.ts";
import { eventually } from "../support/eventually.ts";
import {
  createTopology,
  type NodeName,
  nodeUuid,
  type Relay,
  type Status,
  type Topology,
} from "./support/topology.ts";
import { ping, pingUntilReply } from "./support/traffic.ts";

const suffix = String(process.pid % 100000);

interface Lab {
  topology: Topology;
  relay: Relay;
  server: LabProcess;
  serverIface: string;
  ifaces: Record<NodeName, string>;
}

async function setUp(backend: "userspace" | "kernel"): Promise<Lab> {
  const topology = await createTopology(backend === "userspace" ? "p2u" : "p2k");
  try {
    await topology.mgmt.run("sysctl", ["-w", "net.ipv6.conf.all.forwarding=1"]);
    const relay = await topology.startRelay("node");
    const serverIface = `${backend === "userspace" ? "pu" : "pk"}${suffix}`;
    const server = topology.startServer(relay, serverIface, { backend });
    await server.waitFor(/"msg":"ready"/, 30_000);
    const ifaces = { "node-a": `qa${suffix}`, "node-b": `qb${suffix}` };
    const nodes = (["node-a", "node-b"] as const).map((name) =>
      topology.startNode(relay, name, ifaces[name], {
        backend: "userspace",
        nodeUuid: nodeUuid(),
        transport: "websocket",
      }),
    );
    for (const node of nodes) await node.waitFor(/"msg":"ready"/, 60_000);
    return { topology, relay, server, serverIface, ifaces };
  } catch (error) {
    await topology.close();
    throw error;
  }
}

function overlayAddress(status: Status): string {
  assert.ok(status.addresses.local, `no overlay address: ${JSON.stringify(status)}`);
  return status.addresses.local.split("/")[0];
}

/**
 * node-a turns hostile: its server peer may carry anything (`allowed-ips ::/0`) and `::/0` is
 * routed into the link. node-b accepts the network's whole prefix from the server.
 */
async function routeEverythingThroughTheServer(lab: Lab): Promise<{ a: string; b: string }> {
  const { topology, relay, ifaces } = lab;
  const a = await topology.status(ifaces["node-a"]);
  const b = await topology.status(ifaces["node-b"]);
  const serverKey = a.peers[0].publicKey;
  const prefix = `${relay.info.serverAddress.replace(/::1$/, "::")}/64`;
  const attacker = topology.nodes["node-a"];
  await attacker.run("wg", ["set", ifaces["node-a"], "peer", serverKey, "allowed-ips", "::/0"]);
  await attacker.run("ip", ["-6", "route", "replace", "default", "dev", ifaces["node-a"]]);
  await topology.nodes["node-b"].run("wg", [
    "set",
    ifaces["node-b"],
    "peer",
    serverKey,
    "allowed-ips",
    prefix,
  ]);
  return { a: overlayAddress(a), b: overlayAddress(b) };
}

for (const backend of ["userspace", "kernel"] as const) {
  describe(`point to point with the ${backend} server backend and IPv6 forwarding on`, {
    timeout: 300_000,
  }, () => {
    let lab: Lab;
    before(async () => {
      lab = await setUp(backend);
    });
    after(async () => {
      await lab?.topology.close();
    });

    it("a node routing ::/0 to the server reaches the server but not another node", async () => {
      const { topology, relay } = lab;
      const forwarding = await topology.mgmt.run("sysctl", ["-n", "net.ipv6.conf.all.forwarding"]);
      assert.equal(forwarding.stdout.trim(), "1", "the management host forwards IPv6");
      const { a, b } = await routeEverythingThroughTheServer(lab);

      await pingUntilReply(topology.nodes["node-a"], relay.info.serverAddress);
      await pingUntilReply(topology.mgmt, b);
      const attack = await ping(topology.nodes["node-a"], b, 5);
      assert.equal(
        attack.received,
        0,
        `node-a reached node-b through the server: ${JSON.stringify(attack)}`,
      );
      const back = await ping(topology.nodes["node-b"], a, 3);
      assert.equal(back.received, 0, "node-b reached node-a through the server");
      // The overlay is up all along: the server reaches both nodes, both reach the server.
      assert.equal((await ping(topology.mgmt, a, 2)).received, 2);
      assert.equal((await ping(topology.nodes["node-a"], relay.info.serverAddress, 2)).received, 2);

      if (backend === "userspace") {
        const status = await topology.status(lab.serverIface);
        const { drops } = status;
        assert.ok(
          drops.notFromServer >= 5,
          `dropped as not from the server: ${JSON.stringify(drops)}`,
        );
      } else {
        const { stdout } = await topology.mgmt.run("nft", [
          "list",
          "table",
          "inet",
          `siderolink_${lab.serverIface}`,
        ]);
        const counted = /counter packets (\d+)/.exec(stdout);
        assert.ok(counted && Number(counted[1]) >= 5, `the forward rule's counter:\n${stdout}`);
      }
    });

    if (backend === "kernel") {
      it("the nftables table goes with the server sidecar", async () => {
        const { topology, server, serverIface } = lab;
        const table = `siderolink_${serverIface}`;
        const before = await topology.mgmt.run("nft", ["list", "tables"]);
        assert.ok(before.stdout.includes(table), `no ${table} while serving:\n${before.stdout}`);
        await server.stop();
        await eventually("the table removed", async () => {
          const { stdout } = await topology.mgmt.run("nft", ["list", "tables"]);
          return !stdout.includes(table) && stdout;
        });
      });
    }
  });
}
