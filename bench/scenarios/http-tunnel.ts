/**
 * Scenario 7: the HTTP-only tunnel against the WebSocket tunnel, side by side in one run, in the
 * sidecar topology (node, UDP dropped -- edge, Node relay -- mgmt, server sidecar):
 *
 * the node sidecar runs with `--transport websocket`, then with `--transport http` (gRPC-web
 * Receive stream and Send POSTs), alternating, each time a fresh `join` that provisions anew;
 * iperf3 TCP node -> server and server -> node through each. The server's uplink stays a
 * WebSocket, so only the node's leg changes. Medians of the repetitions; the target (issue 16)
 * is at least half of the WebSocket's throughput.
 */
import { MAX_SENDS_IN_FLIGHT } from "../../shared/tunnel/http-tunnel.ts";
import { requirePrerequisites } from "../../test/netns/netns.ts";
import { createOverlayLab } from "../../test/sidecar/support/overlay-lab.ts";
import { iperf } from "../support/iperf.ts";
import { fixed, ratio, type ScenarioOptions, type ScenarioResult } from "../support/result.ts";
import { loadNow, median } from "../support/stats.ts";

type Kind = "websocket" | "http";
type Direction = "node-to-server" | "server-to-node";

interface Sample {
  readonly kind: Kind;
  readonly direction: Direction;
  readonly repetition: number;
  readonly mbitPerSecond: number;
  readonly load: number;
}

const KINDS: readonly Kind[] = ["websocket", "http"];
const DIRECTIONS: readonly Direction[] = ["node-to-server", "server-to-node"];

export async function httpTunnel(options: ScenarioOptions): Promise<ScenarioResult> {
  requirePrerequisites(["ip", "nft", "iperf3", "ping"]);
  const started = performance.now();
  const before = loadNow();
  const overlay = await createOverlayLab("bsh");
  const { mgmt, node } = overlay;
  const suffix = String(process.pid % 100000);
  const samples: Sample[] = [];
  try {
    const relay = await overlay.startRelay();
    const server = overlay.startServer(relay.info, `hs${suffix}`, ["--wireguard", "userspace"]);
    await server.waitFor(/"msg":"ready"/, 30_000);
    const iperfServer = mgmt.spawn("iperf3", ["-s", "--forceflush"]);
    await iperfServer.waitFor(/Server listening/, 10_000);
    for (let repetition = 0; repetition < options.repetitions; repetition++) {
      for (const kind of KINDS) {
        const iface = `h${kind === "http" ? "h" : "w"}${suffix}`;
        const joined = overlay.startNode(relay.info, iface, [
          "--wireguard",
          "userspace",
          "--transport",
          kind,
        ]);
        await joined.waitFor(/"msg":"ready"/, 30_000);
        await overlay.pingUntilReply(node, relay.info.serverAddress, 60);
        for (const direction of DIRECTIONS) {
          const load = loadNow();
          const run = await iperf(
            node,
            relay.info.serverAddress,
            options.seconds,
            direction === "server-to-node",
          );
          samples.push({ kind, direction, repetition, mbitPerSecond: run.mbitPerSecond, load });
          process.stderr.write(
            `  s8 rep ${repetition} ${kind} ${direction}: ${fixed(run.mbitPerSecond)} Mbit/s (load ${load})\n`,
          );
        }
        await joined.stop();
      }
    }
    await iperfServer.stop();
    await server.stop();
  } finally {
    await overlay.close();
  }
  const after = loadNow();
  const rows = DIRECTIONS.map((direction) => {
    const of = (kind: Kind) =>
      median(
        samples
          .filter((s) => s.kind === kind && s.direction === direction)
          .map((s) => s.mbitPerSecond),
      );
    return { direction, websocket: of("websocket"), http: of("http") };
  });
  return {
    id: "s8",
    title: "UDP blocked: the HTTP-only tunnel (gRPC-web) vs the WebSocket tunnel, Node relay",
    method:
      "Namespaces node (UDP dropped on its link) -- edge (Node relay, plain HTTP) -- mgmt (`siderolink-sidecar serve`, userspace WireGuard, WebSocket uplink). " +
      `In node, \`siderolink-sidecar join --wireguard userspace\` with \`--transport websocket\`, then with \`--transport http\` (one gRPC-web Receive response for the relay's frames; up to ${MAX_SENDS_IN_FLIGHT} numbered Send POSTs in flight, each carrying every frame queued meanwhile), alternating, a fresh join each time. ` +
      `iperf3 TCP over the overlay (MTU 1280) from node, ${options.seconds} s per run, both directions, ${options.repetitions} repetitions; medians. The 1-minute load average is recorded with every run: the machine is shared, so the ratio within this run is the figure that counts.`,
    columns: ["direction", "WebSocket Mbit/s", "HTTP-only Mbit/s", "HTTP-only / WebSocket"],
    rows: rows.map((r) => [
      r.direction,
      fixed(r.websocket),
      fixed(r.http),
      ratio(r.http / r.websocket),
    ]),
    targets: rows.map((r) => ({
      name: `${r.direction} throughput, HTTP-only vs WebSocket`,
      goal: ">= 0.5x",
      value: ratio(r.http / r.websocket),
      met: r.http / r.websocket >= 0.5,
    })),
    notes: [
      `load averages during the runs: ${samples.map((s) => s.load).join(", ")}`,
      `The HTTP-only tunnel's node-to-relay direction is at most ${MAX_SENDS_IN_FLIGHT} POSTs per round trip, each carrying what queued meanwhile (up to one Send body, 1 MiB; only what waits beyond it counts against the sidecar's 256 KiB high-water mark), and every POST costs a full HTTP request on both ends; that direction is where it trails the WebSocket, and a slow proxy lowers its ceiling further.`,
      "Two fixes lifted node-to-server from 0.49x to the figure above: the relay answers a Send that overtook an earlier one only once it is switched (answering it at once let the client run past its window, which ended the session with 1007 under load), and the body being built no longer counts as congestion (it dropped datagrams on every busy round trip). With them, four Sends in flight measured no better than two (0.79x to 0.83x against 0.82x to 0.85x, three runs each, load 1 to 2.6), so the tunnel keeps two.",
    ],
    load: { before, after },
    seconds: (performance.now() - started) / 1000,
    data: samples,
  };
}
