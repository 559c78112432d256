/**
 * Scenario 9, the mesh role's paths: two members a and b on one LAN (the mesh end-to-end lab,
 * test/e2e/support/mesh-lab.ts, with the Node relay in the edge namespace), measured over
 *
 *   direct         UDP between a and b allowed: the pair's WireGuard runs over the LAN;
 *   relay          UDP between a and b dropped with nftables: the pair goes through the relay;
 *   kernel direct  the same as direct and relay, with both members on `--wireguard kernel`
 *   kernel relay   (a wireguard-go interface configured with `wg`; no kernel module here);
 *   wireguard-go   plain wireguard-go in the same two namespaces, configured with `wg` over the
 *                  same LAN (the reference for the direct path).
 *
 * Every mesh run starts a fresh pair of members (their keys kept in the state directory) after
 * setting or lifting the drop, and waits until both members' status shows the expected path
 * and a handshake: an established direct path only falls back to the relay after WireGuard's
 * 180 s handshake timeout, so a restart is how a run starts on the relayed path without waiting
 * that out. The paths alternate within each repetition, the order reversed every other one;
 * each run measures iperf3 TCP both ways and ping6 RTT, and records the 1-minute load average.
 */
import { LINK_MTU } from "../../sidecar/backend/backend.ts";
import {
  createMeshLab,
  Lan,
  type MeshLab,
  type MeshStatus,
} from "../../test/e2e/support/mesh-lab.ts";
import {
  generateKeyPair,
  removeKeyFiles,
  startDevice,
  type WgDevice,
} from "../../test/interop/wg-lab.ts";
import { type LabProcess, type Netns, requirePrerequisites } from "../../test/netns/netns.ts";
import { eventually } from "../../test/support/eventually.ts";
import { iperf } from "../support/iperf.ts";
import { ping6 } from "../support/latency.ts";
import { fixed, ratio, type ScenarioOptions, type ScenarioResult } from "../support/result.ts";
import { loadNow, median, percentile } from "../support/stats.ts";

type PathKind = "direct" | "relay" | "kernel direct" | "kernel relay" | "wireguard-go";
type Direction = "a-to-b" | "b-to-a";

interface Sample {
  readonly path: PathKind;
  readonly repetition: number;
  readonly load: number;
  readonly mbitPerSecond: Record<Direction, number>;
  readonly rttMs: number[];
  readonly pingsSent: number;
}

const PATHS: readonly PathKind[] = [
  "direct",
  "relay",
  "kernel direct",
  "kernel relay",
  "wireguard-go",
];
/** The members' arguments for the kernel paths. */
const KERNEL_ARGS = ["--wireguard", "kernel", "--wireguard-go", "wireguard-go"];
/** What a member's status calls a path. */
const statusPath = (path: PathKind): "direct" | "relay" =>
  path === "relay" || path === "kernel relay" ? "relay" : "direct";
const DIRECTIONS: readonly Direction[] = ["a-to-b", "b-to-a"];
/** The nftables table in a that drops UDP to and from b's LAN address for the relayed runs. */
const DROP_TABLE = "meshbench_drop";
/** The wireguard-go pair's tunnel addresses (a ULA prefix of its own, beside the mesh's). */
const WG_GO_A = "fd00:b9::1";
const WG_GO_B = "fd00:b9::2";
const WG_GO_PORT = 52900;

const meshAddress = (status: MeshStatus): string => status.addresses.local.replace(/\/128$/, "");

async function dropLanUdp(a: Netns): Promise<void> {
  await a.run("nft", [
    `table inet ${DROP_TABLE} { ` +
      `chain in { type filter hook input priority 0; policy accept; ip saddr ${Lan.b} meta l4proto udp drop; }; ` +
      `chain out { type filter hook output priority 0; policy accept; ip daddr ${Lan.b} meta l4proto udp drop; }; }`,
  ]);
}

async function liftLanUdpDrop(a: Netns): Promise<void> {
  await a.run("nft", ["delete", "table", "inet", DROP_TABLE]);
}

/** Starts a and b, waits until each sees the other on `path` with a handshake done; b's address. */
async function startPair(
  lab: MeshLab,
  path: "direct" | "relay",
  args: readonly string[],
): Promise<{ members: LabProcess[]; bAddress: string }> {
  const members = [lab.startMember("a", args), lab.startMember("b", args)];
  for (const member of members) await member.waitFor(/"mesh member up"/, 30_000);
  for (const name of ["a", "b"] as const) {
    await eventually(
      `${name}'s peer on the ${path} path with a handshake`,
      async () => {
        const peers = (await lab.status(name)).peers;
        return peers.length === 1 && peers[0].path === path && peers[0].lastHandshake !== null;
      },
      60_000,
      200,
    );
  }
  const bAddress = meshAddress(await lab.status("b"));
  await eventually(
    `a pings b's mesh address ${bAddress}`,
    () => lab.ns.a.run("ping", ["-6", "-c1", "-W1", bAddress]).then(() => true),
    30_000,
    200,
  );
  return { members, bAddress };
}

async function startWireguardGo(lab: MeshLab): Promise<WgDevice[]> {
  const [aKeys, bKeys] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const tag = String(process.pid % 100000);
  const a = await startDevice("wireguard-go", lab.ns.a, `bmg${tag}a`);
  const b = await startDevice("wireguard-go", lab.ns.b, `bmg${tag}b`);
  await a.setInterface(aKeys.privateKey, WG_GO_PORT);
  await b.setInterface(bKeys.privateKey, WG_GO_PORT);
  await a.setPeer({
    publicKey: bKeys.publicKey,
    allowedIps: [`${WG_GO_B}/128`],
    endpoint: `${Lan.b}:${WG_GO_PORT}`,
  });
  await b.setPeer({
    publicKey: aKeys.publicKey,
    allowedIps: [`${WG_GO_A}/128`],
    endpoint: `${Lan.a}:${WG_GO_PORT}`,
  });
  for (const [device, address] of [
    [a, WG_GO_A],
    [b, WG_GO_B],
  ] as const) {
    await device.ns.run("ip", ["link", "set", device.iface, "mtu", String(LINK_MTU)]);
    await device.ns.run("ip", ["address", "add", `${address}/64`, "dev", device.iface, "nodad"]);
    await device.ns.run("ip", ["link", "set", device.iface, "up"]);
  }
  return [a, b];
}

export async function meshPaths(options: ScenarioOptions): Promise<ScenarioResult> {
  requirePrerequisites(["ip", "nft", "wg", "wireguard-go", "iperf3", "ping"]);
  const started = performance.now();
  const before = loadNow();
  const pingCount = options.quick ? 10 : 50;
  const pingInterval = 0.1;
  const samples: Sample[] = [];
  const lab = await createMeshLab("node");
  try {
    await startWireguardGo(lab);
    const iperfServer = lab.ns.b.spawn("iperf3", ["-s", "--forceflush"]);
    await iperfServer.waitFor(/Server listening/, 10_000);
    let dropped = false;
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      const order = repetition % 2 === 1 ? PATHS : [...PATHS].reverse();
      for (const path of order) {
        const wantDrop = path === "relay" || path === "kernel relay";
        if (wantDrop !== dropped) {
          await (wantDrop ? dropLanUdp(lab.ns.a) : liftLanUdpDrop(lab.ns.a));
          dropped = wantDrop;
        }
        let members: LabProcess[] = [];
        let bAddress = WG_GO_B;
        if (path !== "wireguard-go") {
          const args = path.startsWith("kernel") ? KERNEL_ARGS : [];
          ({ members, bAddress } = await startPair(lab, statusPath(path), args));
        } else {
          await eventually(
            `a pings b over wireguard-go at ${WG_GO_B}`,
            () => lab.ns.a.run("ping", ["-6", "-c1", "-W1", WG_GO_B]).then(() => true),
            30_000,
            200,
          );
        }
        const load = loadNow();
        const mbitPerSecond = {} as Record<Direction, number>;
        for (const direction of DIRECTIONS) {
          const run = await iperf(lab.ns.a, bAddress, options.seconds, direction === "b-to-a");
          mbitPerSecond[direction] = run.mbitPerSecond;
        }
        const ping = await ping6(lab.ns.a, bAddress, pingCount, pingInterval);
        if (path !== "wireguard-go") {
          // The run counts only if the pair stayed on the path it was measured for.
          const peer = (await lab.status("a")).peers[0];
          if (peer?.path !== statusPath(path))
            throw new Error(`a's path to b changed to ${peer?.path} during the ${path} run`);
        }
        for (const member of members) await member.stop(10_000);
        const sample: Sample = {
          path,
          repetition,
          load,
          mbitPerSecond,
          rttMs: ping.rttMs,
          pingsSent: ping.sent,
        };
        samples.push(sample);
        process.stderr.write(
          `  s9 rep ${repetition} ${path}: a-to-b ${fixed(mbitPerSecond["a-to-b"])} Mbit/s, b-to-a ${fixed(mbitPerSecond["b-to-a"])} Mbit/s, ` +
            `RTT p50 ${fixed(percentile(ping.rttMs, 50), 3)} ms p99 ${fixed(percentile(ping.rttMs, 99), 3)} ms (${ping.rttMs.length}/${ping.sent} replies, load ${load})\n`,
        );
      }
    }
    await iperfServer.stop();
  } finally {
    await lab.close();
    removeKeyFiles();
  }
  const after = loadNow();

  const summary = PATHS.map((path) => {
    const of = samples.filter((s) => s.path === path);
    const rtts = of.flatMap((s) => s.rttMs);
    return {
      path,
      aToB: median(of.map((s) => s.mbitPerSecond["a-to-b"])),
      bToA: median(of.map((s) => s.mbitPerSecond["b-to-a"])),
      p50: percentile(rtts, 50),
      p99: percentile(rtts, 99),
      lost: of.reduce((sum, s) => sum + s.pingsSent - s.rttMs.length, 0),
      sent: of.reduce((sum, s) => sum + s.pingsSent, 0),
      loads: of.map((s) => s.load),
    };
  });
  const reference = summary.find((s) => s.path === "wireguard-go")!;
  return {
    id: "s9",
    title: "Mesh: direct and relayed paths between two members vs a plain wireguard-go pair",
    method:
      "The mesh end-to-end lab: members a and b (`siderolink-sidecar mesh`, MTU 1280) in two namespaces on one LAN (veth), the Node relay in an edge namespace both reach over TCP. " +
      "Five paths, alternating within each repetition (order reversed every other one): direct (UDP between a and b allowed) and relay (UDP between a and b's LAN addresses dropped by an nftables table in a, so the pair's WireGuard datagrams go through the relay's WebSocket), each with both members on the userspace backend and again on the kernel backend (`--wireguard kernel --wireguard-go wireguard-go`: a wireguard-go interface configured with `wg`, since this host has no kernel module; relayed datagrams pass through the member's loopback bridge), and wireguard-go (a plain wireguard-go pair in the same two namespaces, configured with `wg`, MTU 1280, over the same LAN: the reference for the direct paths). " +
      "Each mesh run starts a fresh pair of members after setting or lifting the drop (an established direct path falls back to the relay only after WireGuard's 180 s handshake timeout) and begins once both members' `status --json` shows the expected path with a handshake and a ping answers; a run whose path changed meanwhile fails the scenario. " +
      `Per run: iperf3 TCP from a to b's mesh (or tunnel) IPv6 address, ${options.seconds} s each way, then ${pingCount} ping6 echoes ${pingInterval * 1000} ms apart on the idle path; ${options.repetitions} repetitions. ` +
      "Throughput is the median over repetitions; RTT percentiles (nearest rank) are over all replies of a path. The 1-minute load average is recorded with every run: the machine is shared, so the comparison within this run is the figure that counts.",
    columns: [
      "path",
      "a-to-b Mbit/s",
      "b-to-a Mbit/s",
      "vs wireguard-go (a-to-b / b-to-a)",
      "RTT p50 ms",
      "RTT p99 ms",
      "lost pings",
      "load per run",
    ],
    rows: summary.map((s) => [
      s.path,
      fixed(s.aToB),
      fixed(s.bToA),
      s.path === "wireguard-go"
        ? "1.00x"
        : `${ratio(s.aToB / reference.aToB)} / ${ratio(s.bToA / reference.bToA)}`,
      fixed(s.p50, 3),
      fixed(s.p99, 3),
      `${s.lost}/${s.sent}`,
      s.loads.join(", "),
    ]),
    // The issue sets no goal for the mesh paths: the ratio column is the comparison.
    targets: [],
    notes: [],
    load: { before, after },
    seconds: (performance.now() - started) / 1000,
    data: { samples },
  };
}
