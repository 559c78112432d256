/**
 * The edge load model (scripts/edge-model/): figures checked against sums done by hand from
 * the inputs, the shape of the capacity curve, the calibration against rows with known costs,
 * and `npm run edge-model` as a process over a results file written here.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  calibrate,
  type MeasuredRows,
  measuredRows,
} from "../../scripts/edge-model/calibration.ts";
import {
  activeDemand,
  batchFactor,
  type Calibration,
  idleDemand,
  largestShard,
  type Network,
  networkCapacity,
  objectCapacity,
  objectLoad,
  type Traffic,
} from "../../scripts/edge-model/model.ts";

const CALIBRATION: Calibration = {
  cpuPerMessageUs: 20,
  cpuPerDatagramUs: 0.2,
  cpuPerByteUs: 0.001,
  senderMessagesPerSecond: 500,
  maxBatch: 64,
};
const IDLE: Traffic = { activeShare: 0, upMbps: 0, downMbps: 0, datagramBytes: 1000 };

function network(overrides: Partial<Network> = {}): Network {
  return {
    traffic: IDLE,
    timers: { keepaliveSeconds: 25, rekeySeconds: 120, pingSeconds: 15 },
    idle: { keepaliveBytes: 32, initiationBytes: 148, responseBytes: 92 },
    limits: {
      messagesPerSecond: 1_000,
      memoryBytes: 128 * 1024 * 1024,
      heapBytesPerConnection: 10 * 1024,
      tunnels: 20_000,
    },
    calibration: CALIBRATION,
    ...overrides,
  };
}

/** Limits that never bind, but for the ones a test names. */
function unbounded(messagesPerSecond: number): Network["limits"] {
  return { messagesPerSecond, memoryBytes: 1e15, heapBytesPerConnection: 1, tunnels: 1e9 };
}

function near(actual: number, expected: number, what: string): void {
  assert.ok(
    Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual}, expected ${expected}`,
  );
}

describe("one object's load", () => {
  test("10,000 idle nodes: a keepalive per 25 s, two handshake messages per 120 s, a ping per 15 s each, and the uplink's ping", () => {
    const load = objectLoad(network(), 10_000);
    // 10,000 x (1/25 + 2/120 + 1/15) + 1/15 = 400 + 166.67 + 666.67 + 0.067
    near(load.messagesIn, 1233.4, "messages in");
    near(load.pings, 10_001 / 15, "pings");
    near(load.messagesOut, load.messagesIn, "messages out");
    near(load.datagrams, 10_000 * (1 / 25 + 2 / 120), "datagrams");
    // Handled messages 566.67 x 20 us + datagrams 566.67 x 0.2 us
    // + bytes 10,000 x (32/25 + 240/120) = 32,800 x 0.001 us
    near(load.cpu, (566.6666666666666 * 20 + 566.6666666666666 * 0.2 + 32.8) / 1e6, "CPU");
    near(load.utilisation.messages, 1.2334, "budget share");
    near(load.utilisation.memory, (10_001 * 10 * 1024) / (128 * 1024 * 1024), "memory share");
    near(load.utilisation.tunnels, 0.5, "tunnel share");
    assert.equal(load.binding, "messages");
  });

  test("an idle object breaks at the message budget: (1,000 - 1/15) / (1/25 + 2/120 + 1/15) nodes", () => {
    const capacity = objectCapacity(network());
    assert.equal(capacity.nodesPerObject, 8107);
    assert.equal(capacity.binding, "messages");
    assert.equal(capacity.byLimit.tunnels, 20_000);
    near(capacity.byLimit.memory, (128 * 1024) / 10 - 1, "memory capacity");
    assert.equal(objectLoad(network(), 8107).utilisation.messages <= 1, true);
    assert.equal(objectLoad(network(), 8108).utilisation.messages > 1, true);
  });

  test("batches grow with the rate above the sender's message rate, up to the batch limit", () => {
    assert.equal(batchFactor(100, CALIBRATION), 1);
    assert.equal(batchFactor(500, CALIBRATION), 1);
    assert.equal(batchFactor(5_000, CALIBRATION), 10);
    assert.equal(batchFactor(500 * 64, CALIBRATION), 64);
    assert.equal(batchFactor(10_000_000, CALIBRATION), 64);
  });

  test("an active node: 8 Mbit/s of 1,000-byte datagrams is 1,000 a second, two to a message", () => {
    const traffic: Traffic = { activeShare: 1, upMbps: 8, downMbps: 0, datagramBytes: 1_000 };
    const demand = activeDemand(network({ traffic }));
    near(demand.datagrams, 1_000 + 2 / 120, "datagrams");
    near(demand.messagesIn, 500 + 2 / 120 + 1 / 15, "messages in");
    const bytes = 1_000 * 1_000 + (148 + 92) / 120;
    const handled = 500 + 2 / 120;
    near(demand.cpu, (handled * 20 + (1_000 + 2 / 120) * 0.2 + bytes * 0.001) / 1e6, "CPU");
  });

  test("a mix weighs active and idle nodes by the active share", () => {
    const traffic: Traffic = {
      activeShare: 0.25,
      upMbps: 0.8,
      downMbps: 0.8,
      datagramBytes: 1_000,
    };
    const mixed = network({ traffic });
    const load = objectLoad(mixed, 400);
    const expected =
      100 * activeDemand(mixed).messagesIn + 300 * idleDemand(mixed).messagesIn + 1 / 15;
    near(load.messagesIn, expected, "messages in");
    // 0.8 Mbit/s of 1,000 bytes is 100 datagrams a second each way, one per message.
    near(activeDemand(mixed).messagesIn, 200 + 2 / 120 + 1 / 15, "active node's messages");
  });
});

describe("which limit binds", () => {
  // One datagram per message, 100 us each: CPU allows 10,000 messages a second.
  const heavy: Calibration = {
    cpuPerMessageUs: 100,
    cpuPerDatagramUs: 0,
    cpuPerByteUs: 0,
    senderMessagesPerSecond: 1e9,
    maxBatch: 64,
  };
  const traffic: Traffic = { activeShare: 1, upMbps: 0.8, downMbps: 0.8, datagramBytes: 1_000 };

  test("a budget below what the CPU can do binds first; above it, the CPU does", () => {
    const below = objectCapacity(
      network({ traffic, calibration: heavy, limits: unbounded(9_000) }),
    );
    assert.equal(below.binding, "messages");
    const above = objectCapacity(
      network({ traffic, calibration: heavy, limits: unbounded(11_000) }),
    );
    assert.equal(above.binding, "cpu");
    // 200 + 2/120 handled messages a node at 100 us: 1 / 0.0200017 s
    assert.equal(above.nodesPerObject, Math.floor(1 / ((200 + 2 / 120) * 100e-6)));
  });

  test("idle nodes cost the CPU little: without a budget, memory binds", () => {
    const capacity = objectCapacity(
      network({
        limits: {
          messagesPerSecond: Infinity,
          memoryBytes: 128 * 1024 * 1024,
          heapBytesPerConnection: 10 * 1024,
          tunnels: 1e9,
        },
      }),
    );
    assert.equal(capacity.binding, "memory");
    assert.equal(capacity.nodesPerObject, 13106);
  });
});

describe("shards", () => {
  test("the largest shard holds more than the mean and never more than every node", () => {
    assert.equal(largestShard(10_000, 1), 10_000);
    near(largestShard(8_000, 4), 2_000 + Math.sqrt(2 * 2_000 * Math.log(4)), "largest of 4");
    // 1 + sqrt(2 ln 2) would exceed both nodes.
    assert.equal(largestShard(2, 2), 2);
  });

  test("with S shards the network carries S times a shard's mean, its largest shard at capacity", () => {
    const one = networkCapacity(network(), 1);
    assert.equal(one, 8107);
    const four = networkCapacity(network(), 4);
    assert.ok(largestShard(four, 4) <= 8107 + 1e-6, `largest shard of ${four}`);
    assert.ok(largestShard(four + 4, 4) > 8107, `largest shard of ${four + 4}`);
    assert.ok(four > 3.9 * 8107 - 4 * 3 * Math.sqrt(8107), `${four} nodes on 4 shards`);
  });

  test("more shards never carry fewer nodes, whatever one object carries", () => {
    for (const budget of [1, 2, 5, 30, 1_000, 1e6]) {
      const each = network({ limits: unbounded(budget) });
      let previous = 0;
      for (let shards = 1; shards <= 128; shards++) {
        const nodes = networkCapacity(each, shards);
        assert.ok(nodes >= previous, `budget ${budget}: ${shards} shards ${nodes} < ${previous}`);
        previous = nodes;
      }
    }
  });
});

/** S3 and S6 rows made from chosen costs: 20 us a message, 1.5 us per 1312-byte datagram, 0.3 us per 128-byte one. */
const ROWS: MeasuredRows = {
  workerdCpu: [
    { batch: 1, size: 1312, messagesPerSecond: 10_000, workerdCpu: 0.215 },
    { batch: 1, size: 1312, messagesPerSecond: 40_000, workerdCpu: 0.86 },
    { batch: 1, size: 1312, messagesPerSecond: 20_000, workerdCpu: 0.9 },
    { batch: 64, size: 1312, messagesPerSecond: 5_000, workerdCpu: 0.58 },
    { batch: 64, size: 1312, messagesPerSecond: 4_000, workerdCpu: 0.464 },
    { batch: 64, size: 1312, messagesPerSecond: 1_000, workerdCpu: 0.5 },
  ],
  sidecar: [
    { messagesPerSecond: 800, datagramsPerMessage: 59, mbitPerSecond: 490 },
    { messagesPerSecond: 1_000, datagramsPerMessage: 60, mbitPerSecond: 560 },
    { messagesPerSecond: 900, datagramsPerMessage: 59.5, mbitPerSecond: 520 },
  ],
  forwarding: [
    { runtime: "durable-object", batch: 64, size: 128, messagesPerSecond: 1e6 / 39.2 },
    { runtime: "durable-object", batch: 64, size: 128, messagesPerSecond: 1e6 / 39.2 },
    { runtime: "durable-object", batch: 1, size: 128, messagesPerSecond: 50_000 },
    { runtime: "node", batch: 64, size: 128, messagesPerSecond: 35_000 },
  ],
  tunnels: [
    { tunnels: 1_000, heapPerTunnel: 11_000 },
    { tunnels: 10_000, heapPerTunnel: 10_000 },
  ],
};

describe("calibration", () => {
  test("recovers the per-message, per-datagram and per-byte costs the rows were made from", () => {
    const { calibration, heapBytesPerConnection, derivation } = calibrate(ROWS, 64);
    near(derivation.cpuPerMessageBatch1Us, 21.5, "CPU per message at batch 1");
    near(derivation.cpuPerMessageLargeBatchUs, 116, "CPU per message at batch 64");
    near(derivation.perLargeDatagramUs, 1.5, "per 1312-byte datagram");
    near(calibration.cpuPerMessageUs, 20, "per message");
    near(derivation.perSmallDatagramUs, 0.3, "per 128-byte datagram");
    near(calibration.cpuPerByteUs, 1.2 / 1184, "per byte");
    near(calibration.cpuPerDatagramUs, 0.3 - (128 * 1.2) / 1184, "per datagram");
    assert.equal(calibration.senderMessagesPerSecond, 900);
    assert.equal(calibration.maxBatch, 64);
    assert.equal(heapBytesPerConnection, 10_000);
    assert.equal(derivation.sidecarMbps, 520);
  });

  test("results without the scenarios it needs say which to run", () => {
    assert.throws(
      () => measuredRows({ scenarios: { s6: { data: { samples: [] } } } }),
      /npm run bench -- --only s3/,
    );
  });
});

describe("npm run edge-model", () => {
  const dir = mkdtempSync(join(tmpdir(), "edge-model-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(import.meta.dirname, "../../scripts/edge-model.ts");
  const run = promisify(execFile);
  const resultsPath = join(dir, "results.json");
  writeFileSync(
    resultsPath,
    JSON.stringify({
      scenarios: {
        s3: { data: { batching: ROWS.workerdCpu, sidecar: ROWS.sidecar } },
        s5: { data: { tunnels: ROWS.tunnels } },
        s6: { data: { samples: ROWS.forwarding } },
      },
    }),
  );

  test("prints one object's load, each profile's binding limit and the capacity per shard count", async () => {
    const { stdout } = await run(
      process.execPath,
      [script, "--results", resultsPath, "--nodes", "10000", "--shards", "1,2"],
      { timeout: 30_000 },
    );
    assert.match(stdout, /=> per message 20\.0 us, per 1312-byte datagram 1\.500 us/);
    assert.match(stdout, /idle node: 0\.1233 messages in \(0\.0667 pings\)/);
    assert.match(stdout, /^ {2}10000 +1,233 +667 +1,233 .* messages +no$/m);
    assert.match(stdout, /^ {2}idle +1000 +8,107 .* messages +8107$/m);
    assert.match(stdout, /^ {2}1 +8107 /m);
    assert.match(stdout, /^ {2}2 +16\d{3} /m);
  });

  test("an unknown profile is refused with the known ones", async () => {
    await assert.rejects(
      run(process.execPath, [script, "--results", resultsPath, "--profile", "heavy"], {
        timeout: 30_000,
      }),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 2);
        assert.match(error.stderr ?? "", /--profile heavy is not one of idle, light, busy, bulk/);
        return true;
      },
    );
  });
});
