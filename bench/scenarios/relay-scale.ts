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

/** What limits the Provision rate when it misses, from the profile the notes record. */
function provisionLimit(relayCpu: number, load: number): string {
  return (
    `What limits it: the relay process used ${fixed(relayCpu * 100)}% of one core and sat idle the rest, so it waits rather than computes: every Provision waits for the uplink's ACK (a WebSocket round trip to the management server, here the bench process) and for the load generator's next call, and all three processes share the 2 vCPU with the machine's other work (1-minute load average ${fixed(load, 1)} at the start). ` +
    "The store's commit (WAL with synchronous=NORMAL, no fsync per commit) is no longer the largest self time (next note). " +
    "What would move it: a machine whose other work leaves the relay, the uplink and the load generator a core each; then one PEER_ADDED per event-loop turn for all the provisions that arrive in it (one ACK round trip for many), and the store on a worker thread."
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
): Promise<{ samples: ProvisionSample[]; profile: string[]; relayCpu: number }> {
  const data = temporaryDirectory("bench-provision-");
  const profiles = temporaryDirectory("bench-provision-profile-");
  const relay = spawnNodeScript(nodeRelayScript, [data.path, "provision"], {
    nodeFlags: ["--cpu-prof", `--cpu-prof-dir=${profiles.path}`],
  });
  const samples: ProvisionSample[] = [];
  let relayCpu = 0;
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
        try {
          const result = await load.nextJson<{
            ok: number;
            errors: Record<string, number>;
            seconds: number;
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
  return { samples, profile, relayCpu: relayCpu / loadSeconds };
}

export async function relayScale(options: ScenarioOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const before = loadNow();
  const counts = options.quick ? [100, 1_000] : [1_000, 10_000];
  const tunnels: TunnelSample[] = [];
  for (const count of counts) tunnels.push(await idleTunnels(count));
  const { samples: provisions, profile, relayCpu } = await provisionRate(options);
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
        ? [provisionLimit(relayCpu, before)]
        : []),
      `Provision runs: the relay process used ${fixed(relayCpu * 100)}% of one core; its CPU profile's largest self times (share of all sampled time): ${profile.join("; ")}.`,
    ],
    load: { before, after: loadNow() },
    seconds: (performance.now() - started) / 1000,
    data: { tunnels, provisions },
  };
}
