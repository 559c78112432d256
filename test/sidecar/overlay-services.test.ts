/**
 * The server role's overlay services on loopback: the events sink against a Talos-equivalent
 * grpc-js client, the kernel log receiver against raw TCP, and the JSONL records writer with
 * rotation. Which sources are nodes comes from a stand-in resolver here (the server link
 * answers from its WireGuard peers; test/e2e/server-services.test.ts runs that for real).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ServiceError } from "@grpc/grpc-js";
import { createLogger } from "../../sidecar/log.ts";
import { renderMetrics } from "../../sidecar/metrics.ts";
import { LineSplitter } from "../../sidecar/services/log-receiver.ts";
import type { NodeResolver } from "../../sidecar/services/nodes.ts";
import {
  EVENTS_FILE,
  LOGS_FILE,
  type OverlayServices,
  startOverlayServices,
} from "../../sidecar/services/overlay-services.ts";
import { createRecordCounters, createRecordWriter } from "../../sidecar/services/records.ts";
import type { StatusSnapshot } from "../../sidecar/status.ts";
import { eventually } from "../support/eventually.ts";
import { runCli } from "./support/cli.ts";
import {
  closedByPeer,
  encodeMachineEvent,
  eventSinkClient,
  kernelLogLine,
  logSender,
  send,
  typeUrl,
} from "./support/talos-clients.ts";

const quiet = createLogger("test", { write: () => {} });
const NODE_UUID = "5b2f3c9e-1d2a-4c4e-9f00-7a1b2c3d4e5f";
const readLines = (path: string): Record<string, unknown>[] =>
  existsSync(path)
    ? readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line))
    : [];

describe("overlay services on loopback", () => {
  const dir = mkdtempSync(join(tmpdir(), "siderolink-records-"));
  /** Sources the stand-in resolver accepts as nodes. */
  const nodes = new Set<string>(["::1"]);
  const resolveNode: NodeResolver = async (address) =>
    address !== undefined && nodes.has(address) ? { address, uuid: NODE_UUID } : undefined;
  let services: OverlayServices;
  let eventPort = 0;
  let logPort = 0;

  before(async () => {
    // Port 0 would turn a service off: pick two free ports first.
    const free = async (): Promise<number> => {
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, "::1", resolve));
      const port = (probe.address() as { port: number }).port;
      await new Promise((resolve) => probe.close(resolve));
      return port;
    };
    eventPort = await free();
    logPort = await free();
    services = await startOverlayServices({
      host: "::1",
      eventSinkPort: eventPort,
      logReceiverPort: logPort,
      recordsDir: dir,
      stdout: false,
      maxFileBytes: 1 << 20,
      keepFiles: 2,
      resolveNode,
      log: quiet,
    });
  });
  after(async () => {
    await services?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("records a Talos machine's events decoded, unknown types as base64, with the node", async () => {
    const client = eventSinkClient(`[::1]:${eventPort}`);
    try {
      await client.publish(
        typeUrl("MachineStatusEvent"),
        encodeMachineEvent("MachineStatusEvent", {
          stage: 4,
          status: { ready: false, unmet_conditions: [{ name: "nodeReady", reason: "kubelet" }] },
        }),
        "d4l1000000000000000a",
        "actor-1",
      );
      await client.publish(
        typeUrl("SequenceEvent"),
        encodeMachineEvent("SequenceEvent", {
          sequence: "boot",
          action: 2,
          error: { code: 1, message: "locked" },
        }),
        "d4l1000000000000000b",
      );
      await client.publish(
        "type.googleapis.com/vendor.SomethingElse",
        Uint8Array.of(8, 150, 1),
        "d4l1000000000000000c",
      );
    } finally {
      client.close();
    }
    const records = await eventually("three event records", () => {
      const lines = readLines(join(dir, EVENTS_FILE));
      return lines.length >= 3 ? lines : undefined;
    });
    const [status, sequence, unknown] = records;
    assert.equal(status.kind, "event");
    assert.equal(status.node, "::1");
    assert.equal(status.nodeUuid, NODE_UUID);
    assert.equal(status.id, "d4l1000000000000000a");
    assert.equal(status.actorId, "actor-1");
    assert.equal(status.typeUrl, "type.googleapis.com/machine.MachineStatusEvent");
    assert.deepEqual(status.payload, {
      stage: "RUNNING",
      status: { unmetConditions: [{ name: "nodeReady", reason: "kubelet" }] },
    });
    assert.ok(!Number.isNaN(Date.parse(String(status.receivedAt))));
    assert.deepEqual(sequence.payload, {
      sequence: "boot",
      action: "STOP",
      error: { code: "LOCKED", message: "locked" },
    });
    assert.equal(unknown.typeUrl, "type.googleapis.com/vendor.SomethingElse");
    assert.equal(unknown.payloadBase64, Buffer.from([8, 150, 1]).toString("base64"));
    assert.equal(unknown.payload, undefined);
    assert.equal(services.counters.events.recorded, 3);
  });

  it("counts and drops malformed and oversized events but answers them, so Talos moves on", async () => {
    const before = { ...services.counters.events };
    const client = eventSinkClient(`[::1]:${eventPort}`);
    try {
      // Field 1 (stage) as a length-delimited field claiming 100 bytes that are not there.
      await client.publish(typeUrl("MachineStatusEvent"), Uint8Array.of(0x0a, 100, 1), "bad-1");
      await client.publish("", new Uint8Array(0), "bad-2");
      await client.publish(
        typeUrl("ConfigLoadErrorEvent"),
        encodeMachineEvent("ConfigLoadErrorEvent", { error: "x".repeat(70 * 1024) }),
        "big-1",
      );
      await client.publish(
        typeUrl("PhaseEvent"),
        encodeMachineEvent("PhaseEvent", { phase: "install", action: 1 }),
        "after-1",
      );
    } finally {
      client.close();
    }
    const after = await eventually("the event after the bad ones recorded", () =>
      services.counters.events.recorded === before.recorded + 1
        ? { ...services.counters.events }
        : undefined,
    );
    assert.equal(after.malformed, before.malformed + 2);
    assert.equal(after.oversized, before.oversized + 1);
    const last = readLines(join(dir, EVENTS_FILE)).at(-1)!;
    assert.equal(last.id, "after-1");
    assert.deepEqual(last.payload, { phase: "install", action: "STOP" });
  });

  it("refuses events from an address that is not a node with PermissionDenied, recording nothing", async () => {
    nodes.delete("::1");
    const client = eventSinkClient(`[::1]:${eventPort}`);
    const before = readLines(join(dir, EVENTS_FILE)).length;
    try {
      await assert.rejects(
        client.publish(
          typeUrl("PhaseEvent"),
          encodeMachineEvent("PhaseEvent", { phase: "x" }),
          "refused-1",
        ),
        (error: ServiceError) => {
          assert.equal(error.code, 7, "PERMISSION_DENIED");
          // connect-es percent-encodes grpc-message beyond what grpc-js's decodeURI undoes;
          // grpc-go (Talos) decodes every %XX.
          assert.match(
            decodeURIComponent(error.details),
            /^peer not allowed: ::1 is not a node of this network$/,
          );
          return true;
        },
      );
    } finally {
      client.close();
      nodes.add("::1");
    }
    assert.equal(services.counters.events.refused, 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(readLines(join(dir, EVENTS_FILE)).length, before);
  });

  it("records kernel-log lines; malformed and oversized lines are dropped and the connection carries on", async () => {
    const socket = await logSender("::1", logPort);
    try {
      await send(socket, kernelLogLine(1, "Linux version 6.12"));
      // Two records in one write, the second split across writes.
      const two = kernelLogLine(2, "second") + kernelLogLine(3, "third");
      await send(socket, two.slice(0, two.length - 10));
      await send(socket, two.slice(two.length - 10));
      await send(socket, "this is not JSON\n");
      await send(socket, "[1,2,3]\n");
      await send(socket, `{"msg":"${"y".repeat(20 * 1024)}"}\n`);
      await send(socket, kernelLogLine(4, "after the bad lines"));
    } finally {
      socket.end();
    }
    const records = await eventually("four log records", () => {
      const lines = readLines(join(dir, LOGS_FILE));
      return lines.length >= 4 ? lines : undefined;
    });
    assert.deepEqual(
      records.map((record) => (record.payload as { msg: string }).msg),
      ["Linux version 6.12", "second", "third", "after the bad lines"],
    );
    for (const record of records) {
      assert.equal(record.kind, "log");
      assert.equal(record.node, "::1");
      assert.equal(record.nodeUuid, NODE_UUID);
      assert.equal((record.payload as { facility: string }).facility, "kern");
    }
    assert.equal(services.counters.logs.malformed, 2);
    assert.equal(services.counters.logs.oversized, 1);
    assert.equal(services.counters.logs.recorded, 4);
  });

  it("closes a kernel-log connection from an address that is not a node, recording nothing", async () => {
    nodes.delete("::1");
    try {
      const socket = await logSender("::1", logPort);
      socket.write(kernelLogLine(99, "from a stranger"));
      await closedByPeer(socket);
    } finally {
      nodes.add("::1");
    }
    assert.equal(services.counters.logs.refused, 1);
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(
      !readLines(join(dir, LOGS_FILE)).some(
        (record) => (record.payload as { seq: number }).seq === 99,
      ),
    );
  });

  it("metrics show the records counters by service and outcome", () => {
    const snapshot = {
      role: "server",
      iface: "x",
      backend: "userspace",
      pid: 1,
      startedAt: new Date().toISOString(),
      relay: "http://relay",
      up: true,
      transport: {
        kind: "websocket",
        choice: "websocket",
        reason: null,
        state: "connected",
        lastError: null,
        connects: 1,
        rxDatagrams: 0,
        txDatagrams: 0,
        rxBytes: 0,
        txBytes: 0,
      },
      addresses: { local: null, server: null, virtual: null },
      peers: [],
      drops: {},
      records: services.counters,
    } satisfies StatusSnapshot;
    const text = renderMetrics(snapshot, Date.now());
    assert.match(
      text,
      /^siderolink_sidecar_records_total\{service="logs",outcome="oversized"\} 1$/m,
    );
    assert.match(
      text,
      /^siderolink_sidecar_records_total\{service="events",outcome="refused"\} 1$/m,
    );
    assert.match(
      text,
      /^siderolink_sidecar_records_total\{service="events",outcome="recorded"\} 4$/m,
    );
  });
});

describe("LineSplitter", () => {
  it("splits lines fed two bytes at a time, skips a long one whole, takes a last unterminated line", () => {
    const lines: string[] = [];
    let oversized = 0;
    const splitter = new LineSplitter(
      8,
      (line) => lines.push(line.toString()),
      () => oversized++,
    );
    const input = Buffer.from("one\r\ntwo\n\nthis-is-too-long\nshort\nlast");
    for (let i = 0; i < input.length; i += 2) splitter.push(input.subarray(i, i + 2));
    splitter.end();
    assert.deepEqual(lines, ["one\r", "two", "short", "last"]);
    assert.equal(oversized, 1);
  });
});

describe("records writer", () => {
  it("rotates by size keeping the given number of old files, and copies lines to stdout", () => {
    const dir = mkdtempSync(join(tmpdir(), "siderolink-rotate-"));
    try {
      const path = join(dir, "logs.jsonl");
      const counters = createRecordCounters();
      const copied: string[] = [];
      const writer = createRecordWriter({
        path,
        maxBytes: 200,
        keep: 2,
        stdout: true,
        counters,
        onError: (error) => assert.fail(error),
        writeStdout: (text) => copied.push(text),
      });
      const record = (n: number) => JSON.stringify({ n, pad: "p".repeat(40) });
      for (let n = 0; n < 20; n++) {
        writer.write(record(n));
        writer.flush();
      }
      writer.close();
      assert.equal(counters.recorded, 20);
      for (const file of [path, `${path}.1`, `${path}.2`]) {
        assert.ok(existsSync(file), file);
        assert.ok(statSync(file).size <= 200, `${file} is ${statSync(file).size} bytes`);
      }
      assert.ok(!existsSync(`${path}.3`), "only two old files are kept");
      const newest = readLines(path).map((line) => line.n as number);
      const older = readLines(`${path}.1`).map((line) => line.n as number);
      assert.equal(newest.at(-1), 19);
      assert.equal(older.at(-1), (newest[0] as number) - 1, "rotation loses no line in between");
      assert.equal(
        copied.join(""),
        `${Array.from({ length: 20 }, (_, n) => record(n)).join("\n")}\n`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("serve records options", () => {
  it("refuses a records port without a place for the records", async () => {
    const result = await runCli([
      "serve",
      "--relay",
      "http://127.0.0.1:1",
      "--network",
      "n",
      "--uplink-secret",
      "s",
      "--log-receiver-port",
      "9000",
    ]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--log-receiver-port needs --records-dir DIR or --records-stdout/);
    const same = await runCli([
      "serve",
      "--relay",
      "http://127.0.0.1:1",
      "--network",
      "n",
      "--uplink-secret",
      "s",
      "--records-stdout",
      "--event-sink-port",
      "9000",
      "--log-receiver-port",
      "9000",
    ]);
    assert.equal(same.code, 2, same.stderr);
    assert.match(same.stderr, /both 9000; give them different ports/);
  });
});
