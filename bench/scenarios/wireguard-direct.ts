/**
 * Scenario 1, direct UDP: two namespaces joined by a veth pair carry two WireGuard tunnels side
 * by side, a pair of our devices (`siderolink-sidecar wireguard`) and a pair of wireguard-go.
 * iperf3 TCP runs through one tunnel at a time, alternating implementations and directions for
 * every repetition; medians are quoted with the CPU both WireGuard processes spent per GB
 * carried (utime + stime from /proc/<pid>/stat).
 */
import {
  type DeviceKind,
  generateKeyPair,
  removeKeyFiles,
  startDevice,
  type WgDevice,
} from "../../test/interop/wg-lab.ts";
import { createLab, type Netns, requirePrerequisites } from "../../test/netns/netns.ts";
import { iperf } from "../support/iperf.ts";
import { fixed, ratio, type ScenarioOptions, type ScenarioResult } from "../support/result.ts";
import { loadNow, median, totalCpuSeconds } from "../support/stats.ts";

type Direction = "a-to-b" | "b-to-a";

interface Tunnel {
  readonly kind: DeviceKind;
  readonly a: WgDevice;
  readonly b: WgDevice;
  readonly bAddress: string;
}

interface Sample {
  readonly kind: DeviceKind;
  readonly direction: Direction;
  readonly repetition: number;
  readonly mbitPerSecond: number;
  readonly cpuSecondsPerGB: number;
}

async function startTunnel(
  kind: DeviceKind,
  a: Netns,
  b: Netns,
  index: number,
  port: number,
): Promise<Tunnel> {
  const tag = kind === "ours" ? "ts" : "go";
  const [aKeys, bKeys] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const da = await startDevice(kind, a, `${tag}a${process.pid}`);
  const db = await startDevice(kind, b, `${tag}b${process.pid}`);
  const net = `10.${210 + index}.0`;
  await da.setInterface(aKeys.privateKey, port);
  await db.setInterface(bKeys.privateKey, port + 1);
  await da.setPeer({
    publicKey: bKeys.publicKey,
    allowedIps: [`${net}.2/32`],
    endpoint: `10.209.0.2:${port + 1}`,
  });
  await db.setPeer({
    publicKey: aKeys.publicKey,
    allowedIps: [`${net}.1/32`],
    endpoint: `10.209.0.1:${port}`,
  });
  await da.addressAndUp([`${net}.1/24`]);
  await db.addressAndUp([`${net}.2/24`]);
  await a.run("ping", ["-c", "2", "-i", "0.2", "-w", "10", `${net}.2`]);
  return { kind, a: da, b: db, bAddress: `${net}.2` };
}

export async function wireguardDirect(options: ScenarioOptions): Promise<ScenarioResult> {
  requirePrerequisites(["ip", "wg", "wireguard-go", "iperf3", "ping"]);
  const started = performance.now();
  const before = loadNow();
  const lab = createLab("bwg");
  const samples: Sample[] = [];
  try {
    const a = await lab.namespace("a");
    const b = await lab.namespace("b");
    await lab.link(a, "10.209.0.1/24", b, "10.209.0.2/24");
    const tunnels = [
      await startTunnel("ours", a, b, 0, 52000),
      await startTunnel("wireguard-go", a, b, 1, 52100),
    ];
    const server = b.spawn("iperf3", ["-s", "--forceflush"]);
    await server.waitFor(/Server listening/, 5000);
    for (let repetition = 1; repetition <= options.repetitions; repetition++) {
      for (const direction of ["a-to-b", "b-to-a"] as const) {
        const order = repetition % 2 === 1 ? tunnels : [...tunnels].reverse();
        for (const tunnel of order) {
          const pids = [tunnel.a.process.pid, tunnel.b.process.pid];
          const cpuBefore = totalCpuSeconds(pids);
          const run = await iperf(a, tunnel.bAddress, options.seconds, direction === "b-to-a");
          const cpu = totalCpuSeconds(pids) - cpuBefore;
          const sample: Sample = {
            kind: tunnel.kind,
            direction,
            repetition,
            mbitPerSecond: run.mbitPerSecond,
            cpuSecondsPerGB: cpu / (run.bytes / 1e9),
          };
          samples.push(sample);
          process.stderr.write(
            `  s1 rep ${repetition} ${tunnel.kind} ${direction}: ${fixed(sample.mbitPerSecond)} Mbit/s, ${fixed(sample.cpuSecondsPerGB, 1)} CPU s/GB\n`,
          );
        }
      }
    }
  } finally {
    await lab.close();
    removeKeyFiles();
  }

  const summary = (["a-to-b", "b-to-a"] as const).map((direction) => {
    const of = (kind: DeviceKind) =>
      samples.filter((s) => s.kind === kind && s.direction === direction);
    const ours = of("ours");
    const go = of("wireguard-go");
    const oursMbit = median(ours.map((s) => s.mbitPerSecond));
    const goMbit = median(go.map((s) => s.mbitPerSecond));
    return {
      direction,
      oursMbit,
      goMbit,
      ratio: oursMbit / goMbit,
      oursCpu: median(ours.map((s) => s.cpuSecondsPerGB)),
      goCpu: median(go.map((s) => s.cpuSecondsPerGB)),
    };
  });
  return {
    id: "s1",
    title: "Direct UDP: our userspace WireGuard vs wireguard-go",
    method:
      `Two namespaces joined by a veth pair carry a pair of our devices (\`siderolink-sidecar wireguard\`) and a pair of wireguard-go side by side (MTU 1420 both). ` +
      `iperf3 TCP, ${options.seconds} s per run, through one tunnel at a time, alternating implementation and direction, ${options.repetitions} repetitions; medians. ` +
      "CPU is utime + stime of both WireGuard processes per GB received.",
    columns: [
      "direction",
      "ours Mbit/s",
      "wireguard-go Mbit/s",
      "ratio",
      "ours CPU s/GB",
      "wg-go CPU s/GB",
    ],
    rows: summary.map((r) => [
      r.direction,
      fixed(r.oursMbit),
      fixed(r.goMbit),
      ratio(r.ratio),
      fixed(r.oursCpu, 1),
      fixed(r.goCpu, 1),
    ]),
    targets: summary.map((r) => ({
      name: `${r.direction} throughput vs wireguard-go`,
      goal: ">= 0.5x (aim 1x)",
      value: ratio(r.ratio),
      met: r.ratio >= 0.5,
    })),
    notes: [],
    load: { before, after: loadNow() },
    seconds: (performance.now() - started) / 1000,
    data: { samples },
  };
}
