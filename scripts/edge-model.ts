/**
 * `npm run edge-model`: how far one network's Durable Object carries, and with S shards
 * (docs/edge-scale.md). Derives the costs from the newest bench/results/<date>.json, then
 * prints one object's load for a traffic profile, each profile's binding limit, and the
 * network's capacity per shard count.
 *
 *   npm run edge-model -- [--profile idle|light|busy|bulk] [--active-share 0.1] [--up 1]
 *     [--down 1] [--datagram 1312] [--budget 1000|none] [--nodes 1000,10000]
 *     [--shards 1,2,4,8] [--results bench/results/DATE.json]
 */
import { readdirSync, readFileSync } from "node:fs";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { DEFAULT_RELAY_LIMITS } from "../relay/app/limits.ts";
import { PING_INTERVAL_MS } from "../shared/tunnel/frame.ts";
import {
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
  MESSAGE_TRANSPORT_SIZE,
  REKEY_AFTER_TIME,
} from "../shared/wireguard/constants.ts";
import { LINK_MTU, PERSISTENT_KEEPALIVE_SECONDS } from "../sidecar/backend/backend.ts";
import { DEFAULT_BATCH } from "../sidecar/tun/tun-linux.ts";
import { type CalibrationResult, calibrate, measuredRows } from "./edge-model/calibration.ts";
import {
  activeDemand,
  type Demand,
  idleDemand,
  LIMITS,
  largestShard,
  type Network,
  networkCapacity,
  objectCapacity,
  objectLoad,
  type Traffic,
} from "./edge-model/model.ts";

/** Cloudflare's soft limit of requests (here: incoming WebSocket messages) per object. */
const MESSAGE_BUDGET = 1_000;
/** A Worker isolate's memory, which a Durable Object's isolate has too. */
const MEMORY_BYTES = 128 * 1024 * 1024;
/** A full-size WireGuard datagram: a 1280-byte packet in a transport message. */
const FULL_DATAGRAM = LINK_MTU + MESSAGE_TRANSPORT_SIZE;

/** Named traffic profiles: management traffic is mostly idle links and small bursts. */
const PROFILES: Record<string, { readonly what: string; readonly traffic: Traffic }> = {
  idle: {
    what: "every node idle (keepalives, rekeys, pings)",
    traffic: { activeShare: 0, upMbps: 0, downMbps: 0, datagramBytes: FULL_DATAGRAM },
  },
  light: {
    what: "10% of nodes active at 0.1 Mbit/s each way",
    traffic: { activeShare: 0.1, upMbps: 0.1, downMbps: 0.1, datagramBytes: FULL_DATAGRAM },
  },
  busy: {
    what: "every node active at 1 Mbit/s each way",
    traffic: { activeShare: 1, upMbps: 1, downMbps: 1, datagramBytes: FULL_DATAGRAM },
  },
  bulk: {
    what: "1% of nodes moving 100 Mbit/s each way",
    traffic: { activeShare: 0.01, upMbps: 100, downMbps: 100, datagramBytes: FULL_DATAGRAM },
  },
};

const { values } = parseArgs({
  options: {
    profile: { type: "string", default: "idle" },
    "active-share": { type: "string" },
    up: { type: "string" },
    down: { type: "string" },
    datagram: { type: "string" },
    budget: { type: "string", default: String(MESSAGE_BUDGET) },
    nodes: { type: "string", default: "100,1000,5000,10000,20000" },
    shards: { type: "string", default: "1,2,4,8,16,32" },
    results: { type: "string" },
  },
});

const resultsPath = values.results ?? newestResults();
const measured = calibrate(
  measuredRows(JSON.parse(readFileSync(resultsPath, "utf8"))),
  DEFAULT_BATCH,
);
const budget = parseBudget(values.budget);
const base = PROFILES[values.profile];
if (base === undefined) {
  fail(`--profile ${values.profile} is not one of ${Object.keys(PROFILES).join(", ")}`);
}
const traffic: Traffic = {
  activeShare: number("active-share", values["active-share"], base.traffic.activeShare, 0, 1),
  upMbps: number("up", values.up, base.traffic.upMbps, 0, 100_000),
  downMbps: number("down", values.down, base.traffic.downMbps, 0, 100_000),
  datagramBytes: number("datagram", values.datagram, base.traffic.datagramBytes, 32, 65_535),
};
const network = networkOf(traffic, budget, measured);

print(`costs from ${relative(process.cwd(), resultsPath) || resultsPath}`);
printDerivation(measured);
print("");
print("per node and second (incoming messages include the pings the runtime answers):");
printDemand("idle node", idleDemand(network));
if (traffic.activeShare > 0) {
  printDemand(
    `active node (${traffic.upMbps} up, ${traffic.downMbps} down Mbit/s)`,
    activeDemand(network),
  );
}
const fullSpeed = measured.derivation.sidecarMbps;
printDemand(
  `one node at the measured full speed (${round(fullSpeed)} Mbit/s each way)`,
  activeDemand(
    networkOf(
      { activeShare: 1, upMbps: fullSpeed, downMbps: fullSpeed, datagramBytes: FULL_DATAGRAM },
      budget,
      measured,
    ),
  ),
);
print("");
print(
  `one object, ${describe(traffic)}; budget ${formatBudget(budget)} messages/s, one core, ${MEMORY_BYTES / 2 ** 20} MiB, ${DEFAULT_RELAY_LIMITS.maxTunnels} tunnels`,
);
table(
  [
    "nodes",
    "msgs in/s",
    "pings/s",
    "msgs out/s",
    "datagrams/s",
    "Mbit/s",
    "CPU %",
    "memory %",
    "binds",
    "fits",
  ],
  list(values.nodes, "nodes").map((nodes) => {
    const load = objectLoad(network, nodes);
    const fits = LIMITS.every((limit) => load.utilisation[limit] <= 1);
    return [
      String(nodes),
      round(load.messagesIn),
      round(load.pings),
      round(load.messagesOut),
      round(load.datagrams),
      round(load.mbps, 1),
      round(load.cpu * 100, 1),
      round(load.utilisation.memory * 100, 1),
      load.binding,
      fits ? "yes" : "no",
    ];
  }),
);
print("");
print("nodes one object carries, by limit (budget: messages/s per object):");
const budgets = [MESSAGE_BUDGET, Infinity];
table(
  ["profile", "budget", ...LIMITS, "binds", "nodes"],
  [
    ...Object.values(PROFILES).map((profile) => profile.traffic),
    ...(Object.values(PROFILES).some((p) => same(p.traffic, traffic)) ? [] : [traffic]),
  ].flatMap((profileTraffic) =>
    budgets.map((each) => {
      const capacity = objectCapacity(networkOf(profileTraffic, each, measured));
      return [
        describe(profileTraffic),
        formatBudget(each),
        ...LIMITS.map((limit) => round(Math.floor(capacity.byLimit[limit]))),
        capacity.binding,
        String(capacity.nodesPerObject),
      ];
    }),
  ),
);
print("");
print(
  `the network with S shard objects, ${describe(traffic)}, budget ${formatBudget(budget)}: nodes carried when the largest shard is full`,
);
table(
  ["shards", "nodes", "largest shard", "mean shard", "binds"],
  list(values.shards, "shards").map((shards) => {
    const nodes = networkCapacity(network, shards);
    return [
      String(shards),
      String(nodes),
      round(largestShard(nodes, shards)),
      round(nodes / shards),
      objectCapacity(network).binding,
    ];
  }),
);
print("");
print(
  `the relay's per-network peer limit (maxPeersPerNetwork) is ${DEFAULT_RELAY_LIMITS.maxPeersPerNetwork} today; sharding past it needs that limit raised`,
);

function networkOf(
  profileTraffic: Traffic,
  messagesPerSecond: number,
  result: CalibrationResult,
): Network {
  return {
    traffic: profileTraffic,
    timers: {
      keepaliveSeconds: PERSISTENT_KEEPALIVE_SECONDS,
      rekeySeconds: REKEY_AFTER_TIME / 1000,
      pingSeconds: PING_INTERVAL_MS / 1000,
    },
    idle: {
      keepaliveBytes: MESSAGE_TRANSPORT_SIZE,
      initiationBytes: MESSAGE_INITIATION_SIZE,
      responseBytes: MESSAGE_RESPONSE_SIZE,
    },
    limits: {
      messagesPerSecond,
      memoryBytes: MEMORY_BYTES,
      heapBytesPerConnection: result.heapBytesPerConnection,
      tunnels: DEFAULT_RELAY_LIMITS.maxTunnels,
    },
    calibration: result.calibration,
  };
}

function printDerivation({
  calibration: c,
  derivation: d,
  heapBytesPerConnection,
}: CalibrationResult): void {
  print(
    `  S3 workerd CPU per message: ${round(d.cpuPerMessageBatch1Us, 1)} us at 1 x ${d.largeBytes} B, ${round(d.cpuPerMessageLargeBatchUs, 1)} us at ${d.largeBatch} x ${d.largeBytes} B`,
  );
  print(
    `  => per message ${round(c.cpuPerMessageUs, 1)} us, per ${d.largeBytes}-byte datagram ${round(d.perLargeDatagramUs, 3)} us`,
  );
  print(
    `  S6 Durable Object at ${d.largeBatch} x ${d.smallBytes} B: ${round(d.wallPerSmallBatchUs, 1)} us per message (at most one core) => per ${d.smallBytes}-byte datagram <= ${round(d.perSmallDatagramUs, 3)} us`,
  );
  print(
    `  => per datagram ${round(c.cpuPerDatagramUs, 3)} us + ${round(c.cpuPerByteUs * 1000, 3)} ns per byte`,
  );
  print(
    `  S3 sidecars at full speed: ${round(c.senderMessagesPerSecond)} messages/s of ${round(d.sidecarDatagramsPerMessage, 1)} datagrams => batches grow above ${round(c.senderMessagesPerSecond)} datagrams/s, at most ${c.maxBatch}`,
  );
  print(`  S5 heap per idle tunnel (Node relay): ${round(heapBytesPerConnection / 1024, 1)} KiB`);
}

function printDemand(what: string, demand: Demand): void {
  print(
    `  ${what}: ${figure(demand.messagesIn)} messages in (${figure(demand.pings)} pings), ${figure(demand.datagrams)} datagrams, ${figure(demand.cpu * 1e6)} us CPU`,
  );
}

/** About four significant digits. */
function figure(value: number): string {
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 1 ? 2 : 4;
  return round(value, digits);
}

function describe(profileTraffic: Traffic): string {
  const named = Object.entries(PROFILES).find(([, p]) => same(p.traffic, profileTraffic));
  if (named) return named[0];
  return `${round(profileTraffic.activeShare * 100)}% at ${profileTraffic.upMbps}/${profileTraffic.downMbps} Mbit/s, ${profileTraffic.datagramBytes} B`;
}

function same(a: Traffic, b: Traffic): boolean {
  return (
    a.activeShare === b.activeShare &&
    a.upMbps === b.upMbps &&
    a.downMbps === b.downMbps &&
    a.datagramBytes === b.datagramBytes
  );
}

function newestResults(): string {
  const dir = fileURLToPath(new URL("../bench/results/", import.meta.url));
  const names = readdirSync(dir)
    .filter((name) => /^\d{4}-\d{2}-\d{2}\.json$/.test(name))
    .sort();
  if (names.length === 0) fail(`no bench results in ${dir}; run \`npm run bench\` first`);
  return `${dir}${names[names.length - 1]}`;
}

function parseBudget(text: string): number {
  if (text === "none") return Infinity;
  return number("budget", text, MESSAGE_BUDGET, 1, 1e9);
}

function formatBudget(value: number): string {
  return Number.isFinite(value) ? String(value) : "none";
}

function number(
  name: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    fail(`--${name} ${JSON.stringify(text)} is not a number from ${min} to ${max}`);
  }
  return value;
}

function list(text: string, name: string): number[] {
  return text.split(",").map((part) => {
    const value = Number(part);
    if (!Number.isInteger(value) || value < 1) {
      fail(`--${name} ${JSON.stringify(text)} must list whole numbers >= 1, separated by commas`);
    }
    return value;
  });
}

function round(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return "-";
  return value.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function table(columns: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = columns.map((column, i) =>
    Math.max(column.length, ...rows.map((row) => row[i].length)),
  );
  const line = (cells: readonly string[]) =>
    `  ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join("  ")}`;
  print(line(columns));
  for (const row of rows) print(line(row));
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

function fail(message: string): never {
  process.stderr.write(`edge-model: ${message}\n`);
  process.exit(2);
}
