/**
 * `npm run bench`: every benchmark scenario of the project, one after another, then a table
 * per scenario on standard output, bench/results/<date>.json and docs/benchmarks.md.
 *
 *   node bench/run.ts [--only s1,s2,...] [--quick] [--seconds N] [--repetitions N]
 *
 *   s1      direct UDP: our WireGuard vs wireguard-go (iperf3)
 *   s2, s4  UDP blocked, Node relay over WebSocket vs wireguard-go over udptunnel (iperf3),
 *           and ping6 RTT idle and under that load (one lab serves both)
 *   s3      the relay in workerd: sidecars through it, and batching on/off with a load generator
 *   s5      Node relay scale: idle tunnels' memory, Provision rate over gRPC-web and gRPC
 *   s6      datagrams/s through the hub on Node and in a Durable Object, per batch size
 *   s7      UDP blocked, Node relay: gRPC CreateStream tunnel vs WebSocket tunnel (iperf3), with a
 *           Talos-equivalent client (wireguard-go + grpc-js) for reference
 *   s8      UDP blocked, the HTTP-only tunnel (gRPC-web) vs the WebSocket tunnel (iperf3)
 *   s9      mesh role: direct and relayed paths between two members vs plain wireguard-go
 *           (iperf3 both ways, ping6 RTT)
 *
 * --quick runs each scenario briefly (to check it works) and leaves the docs alone; its results
 * go to bench/results/<date>-quick.json. A run of some scenarios replaces only those in the
 * date's results, and the docs are rebuilt from all of them. The results name the measured
 * revision from git, or from BENCH_REVISION when the tree is not a git checkout (an export).
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { benchmarksMarkdown, printScenario, type RunRecord } from "./report.ts";
import { grpcTunnel } from "./scenarios/grpc-tunnel.ts";
import { httpTunnel } from "./scenarios/http-tunnel.ts";
import { meshPaths } from "./scenarios/mesh.ts";
import { relayForwarding } from "./scenarios/relay-forwarding.ts";
import { relayScale } from "./scenarios/relay-scale.ts";
import { relayTunnel } from "./scenarios/relay-tunnel.ts";
import { wireguardDirect } from "./scenarios/wireguard-direct.ts";
import { workerTunnel } from "./scenarios/worker-tunnel.ts";
import type { ScenarioOptions, ScenarioResult } from "./support/result.ts";
import { describeMachine } from "./support/stats.ts";

interface Runner {
  readonly ids: readonly string[];
  run(options: ScenarioOptions): Promise<ScenarioResult[]>;
}

const runners: readonly Runner[] = [
  { ids: ["s1"], run: async (o) => [await wireguardDirect(o)] },
  { ids: ["s2", "s4"], run: relayTunnel },
  { ids: ["s3"], run: async (o) => [await workerTunnel(o)] },
  { ids: ["s5"], run: async (o) => [await relayScale(o)] },
  { ids: ["s6"], run: async (o) => [await relayForwarding(o)] },
  { ids: ["s7"], run: async (o) => [await grpcTunnel(o)] },
  { ids: ["s8"], run: async (o) => [await httpTunnel(o)] },
  { ids: ["s9"], run: async (o) => [await meshPaths(o)] },
];
const allIds = runners.flatMap((r) => r.ids);

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    quick: { type: "boolean", default: false },
    seconds: { type: "string" },
    repetitions: { type: "string" },
  },
});
const only = values.only?.split(",").map((id) => id.trim().toLowerCase()) ?? allIds;
const unknown = only.filter((id) => !allIds.includes(id));
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(", ")}: pick from ${allIds.join(", ")}`);
  process.exit(2);
}
const options: ScenarioOptions = {
  quick: values.quick,
  seconds: Number(values.seconds ?? (values.quick ? 3 : 8)),
  repetitions: Number(values.repetitions ?? (values.quick ? 1 : 3)),
};
for (const [name, value] of Object.entries({
  seconds: options.seconds,
  repetitions: options.repetitions,
})) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`--${name} must be a whole number >= 1, got ${JSON.stringify(value)}`);
    process.exit(2);
  }
}

const date = new Date().toISOString().slice(0, 10);
const resultsDir = fileURLToPath(new URL("./results/", import.meta.url));
const resultsName = `bench/results/${date}${options.quick ? "-quick" : ""}.json`;
const resultsPath = fileURLToPath(new URL(`../${resultsName}`, import.meta.url));
const docsPath = fileURLToPath(new URL("../docs/benchmarks.md", import.meta.url));

/** The commit measured, marked "+ local changes" when the work tree differs from it. */
function revision(): string {
  const root = fileURLToPath(new URL("..", import.meta.url));
  try {
    const git = (args: string[]) =>
      execFileSync("git", ["-C", root, ...args], { encoding: "utf8", stdio: "pipe" }).trim();
    const commit = git(["rev-parse", "--short", "HEAD"]);
    return git(["status", "--porcelain"]) === "" ? commit : `${commit} + local changes`;
  } catch {
    return process.env.BENCH_REVISION ?? "unknown (not a git checkout)";
  }
}

const previous: RunRecord | undefined = existsSync(resultsPath)
  ? (JSON.parse(readFileSync(resultsPath, "utf8")) as RunRecord)
  : undefined;
const record: RunRecord = {
  date,
  machine: describeMachine(),
  revision: revision(),
  options: { ...options, only },
  scenarios: { ...previous?.scenarios },
};

/** How this run was started, kept with each scenario it measured. */
const args = process.argv.slice(2);
const command = `npm run bench${args.length > 0 ? ` -- ${args.join(" ")}` : ""}`;

let failed = false;
for (const runner of runners) {
  if (!runner.ids.some((id) => only.includes(id))) continue;
  process.stderr.write(`running ${runner.ids.join(", ")} ...\n`);
  try {
    for (const result of await runner.run(options)) {
      record.scenarios[result.id] = {
        ...result,
        measuredAt: new Date().toISOString(),
        revision: record.revision,
        command,
      };
      console.log(`${printScenario(result)}\n`);
    }
  } catch (error) {
    failed = true;
    console.error(`${runner.ids.join(", ")} failed:`, error);
  }
}

mkdirSync(resultsDir, { recursive: true });
writeFileSync(resultsPath, `${JSON.stringify(record, null, 2)}\n`);
// The repository's formatter has the last word on layout, so `npm run check` stays clean.
const biome = fileURLToPath(new URL("../node_modules/.bin/biome", import.meta.url));
try {
  execFileSync(biome, ["format", "--write", resultsPath], { stdio: "ignore" });
} catch {
  console.error(`could not format ${resultsName} with ${biome}; run npx biome format --write`);
}
console.log(`wrote ${resultsName}`);
if (!options.quick) {
  mkdirSync(fileURLToPath(new URL("../docs/", import.meta.url)), { recursive: true });
  writeFileSync(docsPath, benchmarksMarkdown(record, resultsName));
  console.log("wrote docs/benchmarks.md");
}
process.exitCode = failed ? 1 : 0;
