/**
 * Scenario 5, the Node relay at scale:
 *
 * - Idle tunnels: for each count, a fresh relay process with that many provisioned peers; a
 *   load generator process (support/tunnel-load.ts) opens one node stream per peer and keeps
 *   them alive. Memory per tunnel is the relay's resident set after a full GC with the streams
 *   open, minus the same before they opened, divided by the count (the uplink is open in both).
 * - Provision rate: load generator processes (support/provision-load.ts) call Provision with
 *   many concurrent clients over gRPC-web and over plain gRPC, alternating, while the bench
 *   process plays the management server's uplink and acknowledges every peer change.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type JsonChild,
  type NodeRelayInfo,
  nodeRelayScript,
  spawnNodeScript,
  temporaryDirectory,
} from "../support/child.ts";
import { topSelfTime } from "../support/cpu-profile.ts";
import { openUplink } from "../support/forwarding-load.ts";
import { fixed, type ScenarioOptions, type ScenarioResult } from "../support/result.ts";
import { cpuSeconds, loadNow, median, sleep } from "../support/stats.ts";

const tunnelLoad = fileURLToPath(new URL("../support/tunnel-load.ts", import.meta.url));
const provisionLoad = fileURLToPath(new URL("../support/provision-load.ts", import.meta.url));
const Concurrency = 64;
const Identities = 5_000;
const KiB = 1024;

/** CPU time per answered Provision, in ms, of each process of the Provision runs. */
interface ProvisionCost {
  readonly relayMs: number;
  readonly loadMs: number;
  readonly uplinkMs: number;
  /** Share of one core the relay used while the load ran. */
  readonly relayCore: number;
}

/** What limits the Provision rate when it misses, from the CPU each process spent per call. */
function provisionLimit(cost: ProvisionCost, load: number): string {
  const totalMs = cost.relayMs + cost.loadMs + cost.uplinkMs;
  return (
    `What limits it: CPU. Per answered Provision the relay spent ${fixed(cost.relayMs, 2)} ms of CPU, the load generator ${fixed(cost.loadMs, 2)} ms and the uplink (the bench process) ${fixed(cost.uplinkMs, 2)} ms: ${fixed(totalMs, 2)} ms in all, so the 2 vCPU of this machine carry at most about ${fixed(2000 / totalMs)}/s however the work is spread, and the relay alone, given a whole core, about ${fixed(1000 / cost.relayMs)}/s. ` +
    `The relay used ${fixed(cost.relayCore * 100)}% of one core (1-minute load average ${fixed(load, 1)} at the start). ` +
    "2,000/s needs the relay under 0.5 ms per Provision: its largest costs are the RPC stack (connect-node's handler and HTTP/2, and the garbage they leave) and the store's write transaction (next note), not the uplink's ACK round trip, which overlaps across the concurrent calls."
  );
}

interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
}

interface TunnelSample {
  readonly tunnels: number;
  readonly opened: number;
  readonly openSeconds: number;
  readonly before: Memory;
  readonly after: Memory;
  readonly rssPerTunnel: number;
  readonly heapPerTunnel: number;
}

interface ProvisionSample {
  readonly protocol: "grpc-web" | "grpc";
  readonly repetition: number;
  readonly perSecond: number;
  readonly ok: number;
  readonly errors: Record<string, number>;
}

async function memory(relay: JsonChild): Promise<Memory> {
  relay.child.kill("SIGUSR2");
  return relay.nextJson<Memory>(10_000);
}

async function idleTunnels(count: number): Promise<TunnelSample> {
  const data = temporaryDirectory("bench-scale-");
  const relay = spawnNodeScript(nodeRelayScript, [data.path, "scale", String(count)], {
    nodeFlags: ["--expose-gc"],
  });
  let load: JsonChild | undefined;
  try {
    const info = await relay.nextJson<NodeRelayInfo>(120_000);
    const uplink = await openUplink(info);
    const addresses = join(data.path, "addresses.json");
    writeFileSync(addresses, JSON.stringify(info.virtualAddresses));
    await sleep(1000);
    const before = await memory(relay);
    load = spawnNodeScript(tunnelLoad, [info.url, info.network, addresses, String(count)]);
    const opened = await load.nextJson<{ opened: number; seconds: number }>(300_000);
    await sleep(2000);
    const after = await memory(relay);
    uplink.terminate();
    const sample: TunnelSample = {
      tunnels: count,
      opened: opened.opened,
      openSeconds: opened.seconds,
      before,
      after,
      rssPerTunnel: (after.rss - before.rss) / opened.opened,
      heapPerTunnel: (after.heapUsed - before.heapUsed) / opened.opened,
    };
    process.stderr.write(
      `  s5 ${count} tunnels: ${opened.opened} open in ${fixed(opened.seconds, 1)} s, ${fixed(sample.rssPerTunnel / KiB, 1)} KiB RSS per tunnel\n`,
    );
    return sample;
  } finally {
    await load?.stop();
    await relay.stop();
    data.remove();
  }
}

async function provisionRate(
  options: ScenarioOptions,
): Promise<{ samples: ProvisionSample[]; profile: string[]; cost: ProvisionCost }> {
  const data = temporaryDirectory("bench-provision-");
  const profiles = temporaryDirectory("bench-provision-profile-");
  const relay = spawnNodeScript(nodeRelayScript, [data.path, "provision"], {
    nodeFlags: ["--cpu-prof", `--cpu-prof-dir=${profiles.path}`],
  });
  const samples: ProvisionSample[] = [];
  let relayCpu = 0;
  let loadCpu = 0;
  let uplinkCpu = 0;
  let answered = 0;
  let loadSeconds = 0;
  try {
    const info = await relay.nextJson<NodeRelayInfo>(30_000);
    const uplink = await openUplink(info);
    const protocols = ["grpc-web", "grpc"] as const;
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const protocol of repetition % 2 === 1 ? protocols : [...protocols].reverse()) {
        const load = spawnNodeScript(provisionLoad, [
          info.url,
          info.joinToken,
          protocol,
          String(Concurrency),
          String(options.seconds),
          String(Identities),
        ]);
        const cpuBefore = cpuSeconds(relay.pid);
        const benchBefore = process.cpuUsage();
        try {
          const result = await load.nextJson<{
            ok: number;
            errors: Record<string, number>;
            seconds: number;
            cpuSeconds: number;
          }>((options.seconds + 60) * 1000);
          const sample: ProvisionSample = {
            protocol,
            repetition,
            perSecond: result.ok / result.seconds,
            ok: result.ok,
            errors: result.errors,
          };
          samples.push(sample);
          relayCpu += cpuSeconds(relay.pid) - cpuBefore;
          loadCpu += result.cpuSeconds;
          const bench = process.cpuUsage(benchBefore);
          uplinkCpu += (bench.user + bench.system) / 1e6;
          answered += result.ok;
          loadSeconds += result.seconds;
          process.stderr.write(
            `  s5 rep ${repetition} Provision over ${protocol}: ${fixed(sample.perSecond)}/s, errors ${JSON.stringify(result.errors)}\n`,
          );
        } finally {
          await load.stop();
        }
      }
    }
    uplink.terminate();
  } finally {
    await relay.stop();
    data.remove();
  }
  const profile = topSelfTime(profiles.path, 4);
  profiles.remove();
  const perCall = (cpu: number) => (1000 * cpu) / answered;
  return {
    samples,
    profile,
    cost: {
      relayMs: perCall(relayCpu),
      loadMs: perCall(loadCpu),
      uplinkMs: perCall(uplinkCpu),
      relayCore: relayCpu / loadSeconds,
    },
  };
}

export async function relayScale(options: ScenarioOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const before = loadNow();
  const counts = options.quick ? [100, 1_000] : [1_000, 10_000];
  const tunnels: TunnelSample[] = [];
  for (const count of counts) tunnels.push(await idleTunnels(count));
  const { samples: provisions, profile, cost } = await provisionRate(options);
  const rate = (protocol: "grpc-web" | "grpc") =>
    median(provisions.filter((s) => s.protocol === protocol).map((s) => s.perSecond));
  const errors = provisions.reduce(
    (sum, s) => sum + Object.values(s.errors).reduce((a, b) => a + b, 0),
    0,
  );
  const largest = tunnels[tunnels.length - 1];
  return {
    id: "s5",
    title: "Relay scale on Node: idle tunnels and Provision rate",
    method:
      "Idle tunnels: for each count a fresh relay process with that many peers in its store; a load generator process opens one node WebSocket per peer (200 upgrades at a time) and pings every 15 s. " +
      "Memory per tunnel = (relay RSS after a full GC with the tunnels open - the same before they opened) / tunnels; heap the same way. " +
      `Provision: ${Concurrency} concurrent clients in a load generator process, ${options.seconds} s per run, over gRPC-web (HTTP/1.1) and plain gRPC (HTTP/2 cleartext), alternating, ${options.repetitions} repetitions, median; ` +
      `node identities cycle through ${Identities} UUIDs with a new key per call; the bench process is the uplink and acknowledges every peer change. The relay's abuse limits are lifted.`,
    columns: ["measure", "value"],
    rows: [
      ...tunnels.flatMap((t) => [
        [`${t.tunnels} idle tunnels: RSS per tunnel`, `${fixed(t.rssPerTunnel / KiB, 1)} KiB`],
        [`${t.tunnels} idle tunnels: heap per tunnel`, `${fixed(t.heapPerTunnel / KiB, 1)} KiB`],
        [
          `${t.tunnels} idle tunnels: relay RSS open / before`,
          `${fixed(t.after.rss / 2 ** 20)} / ${fixed(t.before.rss / 2 ** 20)} MiB`,
        ],
        [`${t.tunnels} idle tunnels: opened, time`, `${t.opened}, ${fixed(t.openSeconds, 1)} s`],
      ]),
      ["Provision over gRPC-web", `${fixed(rate("grpc-web"))}/s`],
      ["Provision over gRPC", `${fixed(rate("grpc"))}/s`],
      ["Provision errors (all runs)", String(errors)],
    ],
    targets: [
      {
        name: `RSS per idle tunnel at ${largest.tunnels}`,
        goal: "< 50 KiB",
        value: `${fixed(largest.rssPerTunnel / KiB, 1)} KiB`,
        met: largest.opened === largest.tunnels && largest.rssPerTunnel < 50 * KiB,
      },
      ...(["grpc-web", "grpc"] as const).map((protocol) => ({
        name: `Provision rate over ${protocol}`,
        goal: ">= 2,000/s",
        value: `${fixed(rate(protocol))}/s`,
        met: rate(protocol) >= 2000,
      })),
    ],
    notes: [
      ...((["grpc-web", "grpc"] as const).some((protocol) => rate(protocol) < 2000)
        ? [provisionLimit(cost, before)]
        : []),
      `Provision runs: CPU per answered Provision ${fixed(cost.relayMs, 2)} ms in the relay, ${fixed(cost.loadMs, 2)} ms in the load generator, ${fixed(cost.uplinkMs, 2)} ms in the uplink; the relay's CPU profile's largest self times (share of all sampled time): ${profile.join("; ")}.`,
    ],
    load: { before, after: loadNow() },
    seconds: (performance.now() - started) / 1000,
    data: { tunnels, provisions },
  };
}
