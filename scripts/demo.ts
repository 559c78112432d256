/**
 * `npm run demo` (as root): machines whose networks drop UDP join a SideroLink network through
 * the relay and reach the management host, in network namespaces on this machine.
 *
 *   node scripts/demo.ts [--relay node|worker]
 *
 * Builds the end-to-end suite's topology (test/e2e/support/topology.ts), shows that plain
 * WireGuard over UDP cannot leave a node, starts the relay (Node by default; `--relay worker`
 * runs the Worker in workerd over HTTPS), the server sidecar and two node sidecars (one with
 * the TypeScript WireGuard device, one with wireguard-go), then pings, moves 64 MiB each way
 * and checks that the nodes cannot reach each other. Prints a summary and removes everything,
 * also after a failure or Ctrl-C.
 */
import {
  createTopology,
  type NodeName,
  nodeUuid,
  type RelayKind,
  type Status,
  type Topology,
} from "../test/e2e/support/topology.ts";
import {
  MiB,
  ping,
  pingUntilReply,
  throughputMbit,
  transfer,
} from "../test/e2e/support/traffic.ts";
import { plainWireGuard } from "../test/e2e/support/udp-block.ts";

const relayArg = process.argv.indexOf("--relay");
const relayKind = (relayArg === -1 ? "node" : process.argv[relayArg + 1]) as RelayKind;
if (relayKind !== "node" && relayKind !== "worker") {
  console.error(`usage: node scripts/demo.ts [--relay node|worker]; got --relay ${relayKind}`);
  process.exit(2);
}

const BYTES = 64 * MiB;
const suffix = String(process.pid % 100000);
const started = performance.now();
const step = (text: string): void => {
  const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${seconds}s] ${text}`);
};
const check = (ok: boolean, text: string): void => {
  if (!ok) throw new Error(text);
};

interface NodeSummary {
  name: NodeName;
  device: string;
  status: Status;
  rttMs: number | null;
  upMbit: number;
  downMbit: number;
}

async function demo(topology: Topology): Promise<void> {
  step("namespaces up: edge (relay), mgmt (server), node-a and node-b (all UDP dropped)");
  const blocked = await plainWireGuard(
    topology.work,
    topology.edge,
    "10.94.0.1",
    topology.nodes["node-a"],
    `${suffix}a`,
  );
  check(
    !blocked.reached && blocked.latestHandshake === 0,
    "plain WireGuard over UDP got through the firewall",
  );
  step("✓ plain WireGuard over UDP from node-a gets no handshake: the block is real");

  const relay = await topology.startRelay(relayKind);
  step(
    `relay up in edge: ${relayKind === "node" ? "Node (gRPC + WebSocket)" : "Worker in workerd (HTTPS + WebSocket)"}, network "edge"`,
  );
  const serverIface = `dm${suffix}`;
  const server = topology.startServer(relay, serverIface);
  await server.waitFor(/"msg":"ready"/, 30_000);
  step(`server sidecar up in mgmt: ${relay.info.serverAddress} on ${serverIface}`);

  const devices: Record<NodeName, "userspace" | "kernel"> = {
    "node-a": "userspace",
    "node-b": "kernel",
  };
  const ifaces: Record<NodeName, string> = { "node-a": `da${suffix}`, "node-b": `db${suffix}` };
  for (const name of ["node-a", "node-b"] as const) {
    const joined = topology.startNode(relay, name, ifaces[name], {
      backend: devices[name],
      nodeUuid: nodeUuid(),
      transport: name === "node-b" ? "websocket" : "auto",
    });
    await joined.waitFor(/"msg":"ready"/, 60_000);
    const status = await topology.status(ifaces[name]);
    step(
      `${name} joined: ${status.addresses.local} via ${status.transport.kind} tunnel (${devices[name] === "userspace" ? "TypeScript WireGuard" : "wireguard-go"})`,
    );
  }

  const summaries: NodeSummary[] = [];
  let port = 5300;
  for (const name of ["node-a", "node-b"] as const) {
    const ns = topology.nodes[name];
    const address = (await topology.status(ifaces[name])).addresses.local!.split("/")[0];
    await pingUntilReply(ns, relay.info.serverAddress);
    const forth = await ping(ns, relay.info.serverAddress, 10);
    const back = await ping(topology.mgmt, address, 10);
    check(
      forth.received === forth.transmitted && back.received === back.transmitted,
      `${name}: lost pings`,
    );
    step(`✓ ping6 ${name} ⇄ server: 10/10 each way, average ${forth.rttAvgMs} ms`);
    const up = await transfer(ns, topology.mgmt, relay.info.serverAddress, port++, BYTES);
    const down = await transfer(topology.mgmt, ns, address, port++, BYTES);
    for (const result of [up, down]) {
      check(
        result.bytesReceived === BYTES && result.receivedSha256 === result.sentSha256,
        `${name}: transfer corrupted`,
      );
    }
    step(
      `✓ ${BYTES / MiB} MiB ${name} → server and back, SHA-256 equal (${up.receivedSha256.slice(0, 12)}…, ${down.receivedSha256.slice(0, 12)}…)`,
    );
    summaries.push({
      name,
      device: devices[name] === "userspace" ? "TypeScript WireGuard" : "wireguard-go",
      status: await topology.status(ifaces[name]),
      rttMs: forth.rttAvgMs,
      upMbit: throughputMbit(up),
      downMbit: throughputMbit(down),
    });
  }

  const b = summaries[1].status.addresses.local!.split("/")[0];
  const across = await ping(topology.nodes["node-a"], b, 3);
  check(across.received === 0, "node-a reached node-b over the overlay");
  step(`✓ node-a cannot reach node-b (${b}): the overlay is point to point`);

  console.log("");
  console.log(`Summary (relay: ${relayKind}, server ${relay.info.serverAddress})`);
  for (const s of summaries) {
    const peer = s.status.peers[0];
    console.log(`  ${s.name}  ${s.device}, ${s.status.transport.kind} tunnel`);
    console.log(`    overlay address   ${s.status.addresses.local}`);
    console.log(`    virtual endpoint  ${s.status.addresses.virtual}`);
    console.log(`    handshake         ${peer?.lastHandshakeAgeSeconds ?? "never"} s ago`);
    console.log(`    ping RTT          ${s.rttMs} ms average`);
    console.log(
      `    throughput        ${s.upMbit.toFixed(0)} Mbit/s to the server, ${s.downMbit.toFixed(0)} Mbit/s back`,
    );
  }
}

let topology: Topology | undefined;
let interrupted = false;
process.once("SIGINT", () => {
  interrupted = true;
  console.log("\ninterrupted: cleaning up");
  void (topology?.close() ?? Promise.resolve()).then(() => process.exit(130));
});
let failed = false;
try {
  topology = await createTopology("demo");
  await demo(topology);
} catch (error) {
  failed = true;
  // After Ctrl-C the steps under way fail as their namespaces go; that is not news.
  if (!interrupted) console.error(`✗ ${(error as Error).message}`);
} finally {
  if (topology && !interrupted) {
    await topology.close();
    step("cleaned up: namespaces, interfaces and processes removed");
  }
}
if (!interrupted) process.exit(failed ? 1 : 0);
