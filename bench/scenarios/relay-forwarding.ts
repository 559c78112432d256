/**
 * Scenario 6, the relay's packet switch alone: datagrams per second through one network's hub
 * on Node (the relay in its own process) and in a Durable Object (local workerd), per batch size
 * (datagrams per WebSocket message), both directions. A load generator speaking the tunnel
 * codec plays the server's uplink and one node (support/forwarding-load.ts).
 */
import { createNetwork, uniqueNetworkName } from "../../test/worker/support/clients.ts";
import { removePersistDirectory, startWorkerRelay } from "../../test/worker/support/miniflare.ts";
import {
  type NodeRelayInfo,
  nodeRelayScript,
  spawnNodeScript,
  temporaryDirectory,
} from "../support/child.ts";
import {
  type ForwardingDirection,
  ForwardingPair,
  type ForwardingSample,
  type RelayNetwork,
} from "../support/forwarding-load.ts";
import { fixed, ratio, type ScenarioOptions, type ScenarioResult } from "../support/result.ts";
import { loadNow, median } from "../support/stats.ts";
import { LIFTED_NODE_LIMIT_VARS } from "../support/worker-limits.ts";

type Runtime = "node" | "durable-object";
const Batches = [1, 8, 32, 64];
/** Small datagrams, so that the per-datagram and per-message costs show rather than copying. */
const Size = 128;
const Window = 32;

interface Sample extends ForwardingSample {
  readonly runtime: Runtime;
  readonly repetition: number;
}

async function measureAll(
  runtime: Runtime,
  network: RelayNetwork,
  options: ScenarioOptions,
  samples: Sample[],
): Promise<void> {
  const pair = await ForwardingPair.open(network);
  const seconds = Math.max(2, Math.round(options.seconds / 3));
  try {
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      const batches = repetition % 2 === 1 ? Batches : [...Batches].reverse();
      for (const batch of batches) {
        for (const direction of ["node-to-uplink", "uplink-to-node"] as const) {
          const sample = await pair.measure(direction, batch, Size, seconds, Window);
          samples.push({ ...sample, runtime, repetition });
          process.stderr.write(
            `  s6 rep ${repetition} ${runtime} ${direction} batch ${batch}: ${fixed(sample.datagramsPerSecond)} datagrams/s, ${sample.lost} lost\n`,
          );
        }
      }
    }
  } finally {
    pair.close();
  }
}

export async function relayForwarding(options: ScenarioOptions): Promise<ScenarioResult> {
  const started = performance.now();
  const before = loadNow();
  const samples: Sample[] = [];

  const data = temporaryDirectory("bench-relay-");
  const relay = spawnNodeScript(nodeRelayScript, [data.path, "bench"]);
  try {
    const info = await relay.nextJson<NodeRelayInfo>(30_000);
    await measureAll("node", info, options, samples);
  } finally {
    await relay.stop();
    data.remove();
  }

  const worker = await startWorkerRelay({ vars: LIFTED_NODE_LIMIT_VARS });
  try {
    const network = await createNetwork(worker.url, worker.operatorToken, uniqueNetworkName("b"));
    await measureAll(
      "durable-object",
      {
        url: worker.url.href,
        network: network.name,
        uplinkSecret: network.uplinkSecret,
        joinToken: network.joinToken,
      },
      options,
      samples,
    );
  } finally {
    await worker.stop();
    await removePersistDirectory(worker);
  }

  const rate = (runtime: Runtime, direction: ForwardingDirection, batch: number) =>
    median(
      samples
        .filter((s) => s.runtime === runtime && s.direction === direction && s.batch === batch)
        .map((s) => s.datagramsPerSecond),
    );
  const rows = (["node", "durable-object"] as const).flatMap((runtime) =>
    (["node-to-uplink", "uplink-to-node"] as const).map((direction) => [
      `${runtime} ${direction}`,
      ...Batches.map((batch) => fixed(rate(runtime, direction, batch))),
      ratio(rate(runtime, direction, 64) / rate(runtime, direction, 1)),
    ]),
  );
  return {
    id: "s6",
    title: "Relay forwarding micro-benchmark: datagrams/s through the hub per batch size",
    method:
      `A load generator speaking the tunnel codec plays the uplink and one node and sends ${Size}-byte WireGuard transport messages through one network's hub, ` +
      `B per WebSocket message, ${Window} messages in flight, ${Math.max(2, Math.round(options.seconds / 3))} s per run, alternating batch order, ${options.repetitions} repetitions; median datagrams/s. ` +
      "Node: the relay in its own process. Durable Object: the Worker in local workerd through Miniflare. Both with the per-node datagram rate limit lifted. Load generator and relay share the machine's 2 vCPU.",
    columns: ["runtime, direction", ...Batches.map((b) => `B=${b}`), "B=64 / B=1"],
    rows,
    targets: [],
    notes: [],
    load: { before, after: loadNow() },
    seconds: (performance.now() - started) / 1000,
    data: { samples },
  };
}
