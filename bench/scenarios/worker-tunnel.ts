/**
 * Scenario 3, the relay in workerd (local Miniflare), two parts:
 *
 * 1. Sidecars through it: the S2 topology with the Worker relay in edge instead of the Node
 *    relay. iperf3 node -> server and back; the node sidecar is preloaded with
 *    support/ws-counter.ts, which counts its WebSocket messages and the datagrams in them, so the
 *    table shows datagrams per message and messages/s as the sidecar batches by itself.
 * 2. Batching on and off: the sidecar has no switch for batching, so a load generator speaking
 *    the tunnel codec (support/forwarding-load.ts) sends full-size WireGuard transport
 *    messages (1312 bytes: 1280-byte MTU + 32) through one network's Durable Object, one per
 *    WebSocket message (off) and 64 per message (on), alternating, both directions.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cliPath, nodeBinary } from "../../test/sidecar/support/cli.ts";
import {
  createOverlayLab,
  EdgeToNode,
  type RelayInfo,
  RelayPort,
} from "../../test/sidecar/support/overlay-lab.ts";
import { createNetwork, uniqueNetworkName } from "../../test/worker/support/clients.ts";
import { removePersistDirectory, startWorkerRelay } from "../../test/worker/support/miniflare.ts";
import { ForwardingPair, type ForwardingSample } from "../support/forwarding-load.ts";
import { iperf } from "../support/iperf.ts";
import { fixed, ratio, type ScenarioOptions, type ScenarioResult } from "../support/result.ts";
import { loadNow, median, sleep, totalCpuSeconds } from "../support/stats.ts";
import { LIFTED_NODE_LIMIT_VARS } from "../support/worker-limits.ts";

const workerdRelay = fileURLToPath(new URL("../support/workerd-relay.ts", import.meta.url));
const wsCounter = fileURLToPath(new URL("../support/ws-counter.ts", import.meta.url));
/** A full-size WireGuard transport message at Talos's MTU: 1280 + 16 header + 16 tag. */
const FullSize = 1312;
const BatchOn = 64;
/** Messages in flight: enough to keep workerd busy, few enough to keep its buffers short. */
const Window = 16;

/** What limits the batching gain when it misses, from the CPU figures the notes record. */
const BatchingLimit =
  "What limits it: with full-size datagrams, 64 per message is about 84 KB, and the work per byte (the load generator masking and copying each frame, workerd copying it through) outweighs the work per message that batching saves: with batching on, workerd uses less CPU than the load generator that feeds it, so the figure measures the generator on this 2-vCPU machine as much as the Durable Object. " +
  "With 128-byte datagrams (S6) the Durable Object gains far more than 10x. What would move it: a load generator on other cores or another machine; on Cloudflare's edge the per-message cost (about 1,000 messages/s per object) dominates further, which is why the sidecars' own batching (datagrams per message in the first rows) is what the edge depends on.";

interface Counts {
  txMessages: number;
  txDatagrams: number;
  rxMessages: number;
  rxDatagrams: number;
}

interface SidecarSample {
  readonly direction: "node-to-server" | "server-to-node";
  readonly repetition: number;
  readonly mbitPerSecond: number;
  readonly messagesPerSecond: number;
  readonly datagramsPerMessage: number;
  readonly cpuSecondsPerGB: number;
}

export async function workerTunnel(options: ScenarioOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const before = loadNow();
  const sidecar = await throughSidecars(options);
  const batching = await batchingOnOff(options);
  const after = loadNow();

  const sidecarRows = (["node-to-server", "server-to-node"] as const).map((direction) => {
    const of = sidecar.filter((s) => s.direction === direction);
    return [
      `sidecars ${direction}`,
      fixed(median(of.map((s) => s.datagramsPerMessage)), 1),
      fixed(median(of.map((s) => s.messagesPerSecond))),
      fixed(median(of.map((s) => s.messagesPerSecond * s.datagramsPerMessage))),
      fixed(median(of.map((s) => s.mbitPerSecond))),
      `${fixed(median(of.map((s) => s.cpuSecondsPerGB)), 1)} CPU s/GB`,
    ];
  });
  const batchSummary = (["node-to-uplink", "uplink-to-node"] as const).map((direction) => {
    const at = (batch: number) =>
      batching.filter((s) => s.direction === direction && s.batch === batch);
    const off = at(1);
    const on = at(BatchOn);
    const offRate = median(off.map((s) => s.datagramsPerSecond));
    const onRate = median(on.map((s) => s.datagramsPerSecond));
    return { direction, off, on, offRate, onRate, gain: onRate / offRate };
  });
  const batchRows = batchSummary.flatMap((r) =>
    (
      [
        ["off", 1, r.off],
        ["on", BatchOn, r.on],
      ] as const
    ).map(([label, batch, samples]) => [
      `load generator ${r.direction}, batching ${label}`,
      String(batch),
      fixed(median(samples.map((s) => s.messagesPerSecond))),
      fixed(median(samples.map((s) => s.datagramsPerSecond))),
      fixed(median(samples.map((s) => s.mbitPerSecond))),
      label === "on" ? `${ratio(r.gain)} datagrams/s of off` : "",
    ]),
  );
  return {
    id: "s3",
    title: "The relay in workerd (local Miniflare): sidecars, and batching on/off",
    method:
      "Part 1: the S2 namespaces with the Worker relay (workerd through Miniflare, the Worker's own socket) in edge; " +
      `our sidecars (userspace WireGuard, WebSocket transport), iperf3 TCP ${options.seconds} s each way, ${options.repetitions} repetitions, medians. ` +
      "The node sidecar runs with bench/support/ws-counter.ts preloaded, which counts the WebSocket messages it sends and receives and the datagrams in them; CPU is the node and server sidecars plus workerd per GB. " +
      "Part 2: the sidecar has no switch for batching, so a load generator speaking the tunnel codec (bench/support/forwarding-load.ts) plays the uplink and one node and sends " +
      `${FullSize}-byte WireGuard transport messages through the network's Durable Object, 1 per WebSocket message (batching off) or ${BatchOn} (on), ${Window} messages in flight, ` +
      `${batchingSeconds(options)} s per run, alternating, ${options.repetitions} repetitions, medians.`,
    columns: ["run", "datagrams/message", "messages/s", "datagrams/s", "Mbit/s", ""],
    rows: [...sidecarRows, ...batchRows],
    targets: batchSummary.map((r) => ({
      name: `${r.direction} datagrams/s, batching on vs one per message`,
      goal: ">= 10x",
      value: ratio(r.gain),
      met: r.gain >= 10,
    })),
    notes: [
      ...batchSummary.map((r) => {
        const cpu = (samples: readonly BatchingSample[], pick: (s: BatchingSample) => number) =>
          fixed(median(samples.map(pick)) * 100);
        return `${r.direction}: CPU (share of one core) with batching off: workerd ${cpu(r.off, (s) => s.workerdCpu)}%, load generator ${cpu(r.off, (s) => s.generatorCpu)}%; on: workerd ${cpu(r.on, (s) => s.workerdCpu)}%, load generator ${cpu(r.on, (s) => s.generatorCpu)}%`;
      }),
      ...(batchSummary.some((r) => r.gain < 10) ? [BatchingLimit] : []),
    ],
    load: { before, after },
    seconds: (performance.now() - started) / 1000,
    data: { sidecar, batching },
  };
}

function batchingSeconds(options: ScenarioOptions): number {
  return Math.max(2, Math.round(options.seconds / 2));
}

async function throughSidecars(options: ScenarioOptions): Promise<SidecarSample[]> {
  const overlay = await createOverlayLab("bsw");
  const { edge, mgmt, node } = overlay;
  const suffix = String(process.pid % 100000);
  const counterFile = join(overlay.work, "ws-counts.json");
  const samples: SidecarSample[] = [];
  try {
    const relay = edge.spawn(nodeBinary, [workerdRelay, String(RelayPort), "edge"]);
    const info = JSON.parse(await relay.waitFor(/^\{/, 60_000)) as RelayInfo;
    const server = overlay.startServer(info, `ws${suffix}`, ["--wireguard", "userspace"]);
    await server.waitFor(/"msg":"ready"/, 30_000);
    // grpc:// is plaintext for the sidecar, as for Talos; Workers serve Connect, not gRPC.
    const apiUrl = `grpc://${EdgeToNode.edge}:${RelayPort}?jointoken=${info.joinToken}&grpc_tunnel=true`;
    const joined = node.spawn(
      nodeBinary,
      [
        "--import",
        wsCounter,
        cliPath,
        "join",
        apiUrl,
        "--provision-protocol",
        "connect",
        "--transport",
        "websocket",
        "--wireguard",
        "userspace",
        "--iface",
        `wn${suffix}`,
        "--state",
        join(overlay.work, "state-node"),
        "--run-dir",
        join(overlay.work, "run"),
        "--node-uuid",
        randomUUID(),
      ],
      { env: { WS_COUNTER_FILE: counterFile } },
    );
    await joined.waitFor(/"msg":"ready"/, 30_000);
    await overlay.pingUntilReply(node, info.serverAddress);
    const iperfServer = mgmt.spawn("iperf3", ["-s", "--forceflush"]);
    await iperfServer.waitFor(/Server listening/, 5000);
    const workerd = relayProcessIds(relay.pid);
    const pids = [joined.pid, server.pid, ...workerd];
    const counts = async (): Promise<Counts> => {
      // The preload writes every 200 ms; wait for a write that covers what just happened.
      await sleep(300);
      return JSON.parse(readFileSync(counterFile, "utf8")) as Counts;
    };
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const direction of ["node-to-server", "server-to-node"] as const) {
        const countsBefore = await counts();
        const cpuBefore = totalCpuSeconds(pids);
        const run = await iperf(
          node,
          info.serverAddress,
          options.seconds,
          direction === "server-to-node",
        );
        const cpu = totalCpuSeconds(pids) - cpuBefore;
        const countsAfter = await counts();
        const messages =
          direction === "node-to-server"
            ? countsAfter.txMessages - countsBefore.txMessages
            : countsAfter.rxMessages - countsBefore.rxMessages;
        const datagrams =
          direction === "node-to-server"
            ? countsAfter.txDatagrams - countsBefore.txDatagrams
            : countsAfter.rxDatagrams - countsBefore.rxDatagrams;
        const sample: SidecarSample = {
          direction,
          repetition,
          mbitPerSecond: run.mbitPerSecond,
          messagesPerSecond: messages / options.seconds,
          datagramsPerMessage: datagrams / messages,
          cpuSecondsPerGB: cpu / (run.bytes / 1e9),
        };
        samples.push(sample);
        process.stderr.write(
          `  s3 rep ${repetition} sidecars ${direction}: ${fixed(sample.mbitPerSecond)} Mbit/s, ${fixed(sample.datagramsPerMessage, 1)} datagrams/message, ${fixed(sample.messagesPerSecond)} messages/s\n`,
        );
      }
    }
    await iperfServer.stop();
    await joined.stop();
    await server.stop();
    await relay.stop(10_000);
  } finally {
    await overlay.close();
  }
  return samples;
}

function commandName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}

/** The relay host process and its descendants (workerd runs as a child of Miniflare). */
function relayProcessIds(root: number): number[] {
  const ids = [root];
  for (let i = 0; i < ids.length; i++) {
    try {
      const children = readFileSync(`/proc/${ids[i]}/task/${ids[i]}/children`, "utf8").trim();
      if (children) ids.push(...children.split(" ").map(Number));
    } catch {
      // Gone already: nothing to add.
    }
  }
  return ids;
}

interface BatchingSample extends ForwardingSample {
  /** Share of one CPU that workerd and this (load generator) process used during the run. */
  readonly workerdCpu: number;
  readonly generatorCpu: number;
}

async function batchingOnOff(options: ScenarioOptions): Promise<BatchingSample[]> {
  const relay = await startWorkerRelay({ vars: LIFTED_NODE_LIMIT_VARS });
  const workerd = relayProcessIds(process.pid).filter((pid) => commandName(pid) === "workerd");
  const samples: BatchingSample[] = [];
  const seconds = batchingSeconds(options);
  try {
    const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName("bench"));
    const pair = await ForwardingPair.open({
      url: relay.url.href,
      network: network.name,
      uplinkSecret: network.uplinkSecret,
      joinToken: network.joinToken,
    });
    try {
      for (let repetition = 1; repetition <= options.repetitions; repetition++) {
        const batches = repetition % 2 === 1 ? [1, BatchOn] : [BatchOn, 1];
        for (const direction of ["node-to-uplink", "uplink-to-node"] as const) {
          for (const batch of batches) {
            const workerdBefore = totalCpuSeconds(workerd);
            const generatorBefore = process.cpuUsage();
            const startedAt = performance.now();
            const measured = await pair.measure(direction, batch, FullSize, seconds, Window);
            const wall = (performance.now() - startedAt) / 1000;
            const generator = process.cpuUsage(generatorBefore);
            const sample: BatchingSample = {
              ...measured,
              workerdCpu: (totalCpuSeconds(workerd) - workerdBefore) / wall,
              generatorCpu: (generator.user + generator.system) / 1e6 / wall,
            };
            samples.push(sample);
            process.stderr.write(
              `  s3 rep ${repetition} load generator ${direction} batch ${batch}: ${fixed(sample.datagramsPerSecond)} datagrams/s, ${fixed(sample.mbitPerSecond)} Mbit/s, ${sample.lost} lost, CPU workerd ${fixed(sample.workerdCpu * 100)}% generator ${fixed(sample.generatorCpu * 100)}%\n`,
            );
          }
        }
      }
    } finally {
      pair.close();
    }
  } finally {
    await relay.stop();
    await removePersistDirectory(relay);
  }
  return samples;
}
