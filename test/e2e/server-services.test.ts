/**
 * The management server's services over the overlay, end to end with UDP dropped: `serve
 * --records-dir` runs the events sink and the kernel log receiver on the server's overlay
 * address; a machine joined through the Node relay (gRPC tunnel, wireguard-go) sends events
 * over gRPC and kernel-log JSON lines over TCP with the Talos-equivalent clients, and the
 * records name it. A host on the management LAN is refused, and one forging a node's overlay
 * address never gets a connection.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { LabProcess, Netns } from "../netns/netns.ts";
import { nodeBinary } from "../sidecar/support/cli.ts";
import { eventually } from "../support/eventually.ts";
import { createTopology, Links, nodeUuid, type Relay, type Topology } from "./support/topology.ts";
import { pingUntilReply } from "./support/traffic.ts";

const recordsFixture = fileURLToPath(new URL("./fixtures/talos-records.ts", import.meta.url));
const suffix = String(process.pid % 100000);
/** Omni's ports, which are the defaults; given here as an operator would copy them. */
const EVENT_PORT = 8090;
const LOG_PORT = 8092;
const METRICS_PORT = 9464;
/** Addresses put on the mgmt-edge link for the LAN host test. */
const LAN = { edge: "fd99:93::1", mgmt: "fd99:93::2" };

type Record = { [key: string]: unknown };

const readRecords = (path: string): Record[] =>
  existsSync(path)
    ? readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record)
    : [];

/** The interface of `ns` that holds the IPv4 address `address`. */
async function interfaceWith(ns: Netns, address: string): Promise<string> {
  const { stdout } = await ns.run("ip", ["-o", "-4", "address", "show"]);
  const line = stdout.split("\n").find((l) => l.includes(` ${address}/`));
  assert.ok(line, `no interface with ${address} in ${ns.name}:\n${stdout}`);
  return line.split(/\s+/)[1];
}

/** A TCP counter of the namespace (/proc/net/snmp), e.g. OutRsts. */
async function tcpCounter(ns: Netns, name: string): Promise<number> {
  const { stdout } = await ns.run("cat", ["/proc/net/snmp"]);
  const [names, values] = stdout.split("\n").filter((line) => line.startsWith("Tcp:"));
  const index = names.split(/\s+/).indexOf(name);
  return Number(values.split(/\s+/)[index]);
}

interface Context {
  topology: Topology;
  relay: Relay;
  server: LabProcess;
  serverIface: string;
  serverAddress: string;
  node: LabProcess;
  nodeUuid: string;
  nodeAddress: string;
  recordsDir: string;
}

describe("the server's events sink and kernel log receiver over the overlay (Node relay, UDP dropped)", {
  timeout: 600_000,
}, () => {
  const c = {} as Context;

  before(async () => {
    c.topology = await createTopology("e2s");
    try {
      c.relay = await c.topology.startRelay("node");
      c.serverAddress = c.relay.info.serverAddress;
      c.recordsDir = join(c.topology.work, "records");
      c.serverIface = `vm${suffix}`;
      c.server = c.topology.startServer(c.relay, c.serverIface, {
        extraArgs: [
          "--records-dir",
          c.recordsDir,
          "--records-stdout",
          "--event-sink-port",
          String(EVENT_PORT),
          "--log-receiver-port",
          String(LOG_PORT),
          "--metrics-port",
          String(METRICS_PORT),
        ],
      });
      await c.server.waitFor(/"msg":"ready"/, 30_000);
      c.nodeUuid = nodeUuid();
      const iface = `va${suffix}`;
      c.node = c.topology.startNode(c.relay, "node-a", iface, {
        backend: "kernel",
        transport: "grpc",
        nodeUuid: c.nodeUuid,
      });
      await c.node.waitFor(/"msg":"ready"/, 60_000);
      const status = await c.topology.status(iface);
      c.nodeAddress = status.addresses.local!.split("/")[0];
      await pingUntilReply(c.topology.nodes["node-a"], c.serverAddress);
    } catch (error) {
      await c.topology.close();
      throw error;
    }
  });
  after(async () => {
    await c.topology?.close();
  });

  const metrics = async (): Promise<string> => {
    const { stdout } = await c.topology.mgmt.run(nodeBinary, [
      "--input-type=module",
      "-e",
      `process.stdout.write(await (await fetch("http://127.0.0.1:${METRICS_PORT}/metrics")).text())`,
    ]);
    return stdout;
  };
  const counter = (text: string, service: string, outcome: string): number => {
    const match = new RegExp(
      `^siderolink_sidecar_records_total\\{service="${service}",outcome="${outcome}"\\} (\\d+)$`,
      "m",
    ).exec(text);
    assert.ok(match, `no records_total for ${service}/${outcome} in:\n${text}`);
    return Number(match[1]);
  };

  it("the listeners are on the server's overlay address only", async () => {
    const { stdout } = await c.topology.mgmt.run("ss", ["-Htln"]);
    for (const port of [EVENT_PORT, LOG_PORT]) {
      const listeners = stdout.split("\n").filter((line) => line.includes(`]:${port} `));
      assert.deepEqual(
        listeners.map((line) => line.split(/\s+/)[3]),
        [`[${c.serverAddress}]:${port}`],
        stdout,
      );
    }
  });

  it("a machine's events and kernel logs land in the records with its overlay address and UUID; bad ones are counted and dropped", async () => {
    const { stdout } = await c.topology.nodes["node-a"].run(
      nodeBinary,
      [recordsFixture, "node", c.serverAddress, String(EVENT_PORT), String(LOG_PORT)],
      { timeoutMs: 60_000 },
    );
    assert.deepEqual(JSON.parse(stdout), { eventError: null, logError: null });

    const events = await eventually(
      "three event records",
      () => {
        const records = readRecords(join(c.recordsDir, "events.jsonl"));
        return records.length >= 3 ? records : undefined;
      },
      10_000,
      50,
    );
    assert.equal(events.length, 3, "the malformed event is not recorded");
    for (const record of events) {
      assert.equal(record.kind, "event");
      assert.equal(record.node, c.nodeAddress);
      assert.equal(record.nodeUuid, c.nodeUuid, "the UUID the node provisioned with");
    }
    assert.deepEqual(
      events.map((record) => record.id),
      ["node-1", "node-2", "node-3"],
    );
    assert.deepEqual(events[0].payload, { stage: "RUNNING", status: { ready: true } });
    assert.deepEqual(events[1].payload, {
      service: "apid",
      action: "RUNNING",
      message: "Health check successful",
    });
    assert.equal(events[2].typeUrl, "type.googleapis.com/talos.resource.Unknown");
    assert.equal(events[2].payloadBase64, "AQID");

    const logs = await eventually(
      "two log records",
      () => {
        const records = readRecords(join(c.recordsDir, "logs.jsonl"));
        return records.length >= 2 ? records : undefined;
      },
      10_000,
      50,
    );
    assert.deepEqual(
      logs.map((record) => (record.payload as { msg: string }).msg),
      ["node: Linux version 6.12.0-talos", "node: after the bad lines"],
    );
    for (const record of logs) {
      assert.equal(record.node, c.nodeAddress);
      assert.equal(record.nodeUuid, c.nodeUuid);
      assert.equal((record.payload as { facility: string }).facility, "kern");
    }

    const text = await metrics();
    assert.equal(counter(text, "events", "recorded"), 3);
    assert.equal(counter(text, "events", "malformed"), 1);
    assert.equal(counter(text, "logs", "recorded"), 2);
    assert.equal(counter(text, "logs", "malformed"), 1);
    assert.equal(counter(text, "logs", "oversized"), 1);

    // --records-stdout: the same lines on the server's standard output, for journald.
    const firstEvent = JSON.stringify(events[0]);
    await eventually("the records on stdout", () => c.server.output().includes(firstEvent));
  });

  it("a host on the management LAN that is not a node is refused by both services", async () => {
    const { edge, mgmt } = c.topology;
    const edgeIface = await interfaceWith(edge, Links.mgmt.edge);
    const mgmtIface = await interfaceWith(mgmt, Links.mgmt.host);
    await edge.run("ip", ["address", "add", `${LAN.edge}/64`, "dev", edgeIface, "nodad"]);
    await mgmt.run("ip", ["address", "add", `${LAN.mgmt}/64`, "dev", mgmtIface, "nodad"]);
    await edge.run("ip", ["route", "add", `${c.serverAddress}/128`, "via", LAN.mgmt]);
    const before = {
      events: readRecords(join(c.recordsDir, "events.jsonl")).length,
      logs: readRecords(join(c.recordsDir, "logs.jsonl")).length,
    };

    const { stdout } = await edge.run(
      nodeBinary,
      [recordsFixture, "stranger", c.serverAddress, String(EVENT_PORT), String(LOG_PORT)],
      { timeoutMs: 60_000 },
    );
    const result = JSON.parse(stdout) as {
      eventError: { code: number; details: string } | null;
      logClosedByServer: boolean;
    };
    assert.equal(result.eventError?.code, 7, `PERMISSION_DENIED expected: ${stdout}`);
    assert.equal(
      result.eventError?.details,
      `peer not allowed: ${LAN.edge} is not a node of this network`,
    );
    assert.equal(result.logClosedByServer, true);

    const text = await metrics();
    assert.equal(counter(text, "events", "refused"), 1);
    assert.equal(counter(text, "logs", "refused"), 1);
    assert.equal(readRecords(join(c.recordsDir, "events.jsonl")).length, before.events);
    assert.equal(readRecords(join(c.recordsDir, "logs.jsonl")).length, before.logs);
    assert.match(
      c.server.output(),
      /refused an event from an address that is not a node of this network.*"address":"fd99:93::1"/,
    );
  });

  it("a LAN host forging a node's overlay address never completes a connection", async () => {
    const { edge } = c.topology;
    const edgeIface = await interfaceWith(edge, Links.mgmt.edge);
    await edge.run("ip", ["address", "add", `${c.nodeAddress}/128`, "dev", edgeIface, "nodad"]);
    const before = readRecords(join(c.recordsDir, "logs.jsonl")).length;
    const nodeNs = c.topology.nodes["node-a"];
    const resetsBefore = await tcpCounter(nodeNs, "OutRsts");
    const { stdout } = await edge.run(
      nodeBinary,
      [recordsFixture, "forge", c.serverAddress, String(LOG_PORT), c.nodeAddress],
      { timeoutMs: 30_000 },
    );
    const { outcome } = JSON.parse(stdout) as { outcome: string };
    assert.notEqual(outcome, "connected", "the forged source got a TCP connection");
    // The server did answer the forged SYN, through WireGuard to the address's real owner,
    // which reset the connection it never opened.
    assert.ok(
      (await tcpCounter(nodeNs, "OutRsts")) > resetsBefore,
      "node-a received the server's SYN-ACK and reset it",
    );
    assert.equal(readRecords(join(c.recordsDir, "logs.jsonl")).length, before);
    // The real node still gets through.
    await pingUntilReply(c.topology.nodes["node-a"], c.serverAddress);
  });
});
