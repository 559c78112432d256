/**
 * Throughput of our userspace WireGuard against wireguard-go on the same topology, in the same
 * run: two namespaces joined by a veth pair, carrying two WireGuard tunnels side by side (a
 * pair of our devices, a pair of wireguard-go). iperf3 TCP runs through one tunnel at a time,
 * alternating implementations and directions, for several repetitions; the medians are
 * reported with the CPU the two WireGuard processes spent per GB carried (utime + stime from
 * /proc/<pid>/stat).
 *
 *   node bench/wireguard-throughput.ts [--repetitions 5] [--seconds 10] [--out FILE]
 *
 * Needs root and the Debian packages iproute2, wireguard-tools, wireguard-go and iperf3.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type DeviceKind,
  generateKeyPair,
  removeKeyFiles,
  startDevice,
  type WgDevice,
} from "../test/interop/wg-lab.ts";
import { createLab, type Lab, type Netns, requirePrerequisites } from "../test/netns/netns.ts";

const { values } = parseArgs({
  options: {
    repetitions: { type: "string", default: "5" },
    seconds: { type: "string", default: "10" },
    out: {
      type: "string",
      default: fileURLToPath(new URL("./results/wireguard-throughput.json", import.meta.url)),
    },
  },
});
const repetitions = Number(values.repetitions);
const seconds = Number(values.seconds);

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const ClockTicks = 100;

type Direction = "a-to-b" | "b-to-a";

interface Tunnel {
  kind: DeviceKind;
  a: WgDevice;
  b: WgDevice;
  bAddress: string;
}

interface Sample {
  kind: DeviceKind;
  direction: Direction;
  mbitPerSecond: number;
  cpuSecondsPerGB: number;
}

function cpuSeconds(pid: number): number {
  // Fields after the parenthesised command name: state is field 3; utime 14, stime 15.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / ClockTicks;
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

async function measure(tunnel: Tunnel, direction: Direction, a: Netns): Promise<Sample> {
  const pids = [tunnel.a.process.pid, tunnel.b.process.pid];
  const cpuBefore = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const args = ["-c", tunnel.bAddress, "-t", String(seconds), "-J"];
  if (direction === "b-to-a") args.push("-R");
  const { stdout } = await a.run("iperf3", args, { timeoutMs: (seconds + 30) * 1000 });
  const cpu = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - cpuBefore;
  const report = JSON.parse(stdout) as {
    end: { sum_received: { bytes: number; bits_per_second: number } };
  };
  const received = report.end.sum_received;
  return {
    kind: tunnel.kind,
    direction,
    mbitPerSecond: received.bits_per_second / 1e6,
    cpuSecondsPerGB: cpu / (received.bytes / 1e9),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function main(): Promise<void> {
  requirePrerequisites(["ip", "wg", "wireguard-go", "iperf3", "ping"]);
  const lab: Lab = createLab("wgbench");
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

    const samples: Sample[] = [];
    for (let rep = 1; rep <= repetitions; rep++) {
      for (const direction of ["a-to-b", "b-to-a"] as const) {
        for (const tunnel of rep % 2 === 1 ? tunnels : [...tunnels].reverse()) {
          const sample = await measure(tunnel, direction, a);
          samples.push(sample);
          process.stderr.write(
            `rep ${rep} ${sample.kind} ${direction}: ${sample.mbitPerSecond.toFixed(0)} Mbit/s, ` +
              `${sample.cpuSecondsPerGB.toFixed(2)} CPU s/GB\n`,
          );
        }
      }
    }

    const rows = (["a-to-b", "b-to-a"] as const).map((direction) => {
      const of = (kind: DeviceKind) =>
        samples.filter((s) => s.kind === kind && s.direction === direction);
      const ours = of("ours");
      const go = of("wireguard-go");
      const row = {
        direction,
        oursMbitPerSecond: median(ours.map((s) => s.mbitPerSecond)),
        wireguardGoMbitPerSecond: median(go.map((s) => s.mbitPerSecond)),
        oursCpuSecondsPerGB: median(ours.map((s) => s.cpuSecondsPerGB)),
        wireguardGoCpuSecondsPerGB: median(go.map((s) => s.cpuSecondsPerGB)),
      };
      return { ...row, throughputRatio: row.oursMbitPerSecond / row.wireguardGoMbitPerSecond };
    });

    const line = (cells: string[]) =>
      cells.map((c, i) => (i === 0 ? c.padEnd(8) : c.padStart(14))).join(" ");
    console.log(
      `iperf3 TCP, ${seconds} s per run, ${repetitions} repetitions, medians; CPU = both WireGuard processes`,
    );
    console.log(
      line(["way", "ours Mbit/s", "wg-go Mbit/s", "ratio", "ours CPU s/GB", "wg-go CPU s/GB"]),
    );
    for (const r of rows) {
      console.log(
        line([
          r.direction,
          r.oursMbitPerSecond.toFixed(0),
          r.wireguardGoMbitPerSecond.toFixed(0),
          r.throughputRatio.toFixed(2),
          r.oursCpuSecondsPerGB.toFixed(2),
          r.wireguardGoCpuSecondsPerGB.toFixed(2),
        ]),
      );
    }
    const out = values.out;
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(
      out,
      `${JSON.stringify({ date: new Date().toISOString(), seconds, repetitions, rows, samples }, null, 2)}\n`,
    );
    console.log(`wrote ${out}`);
  } finally {
    await lab.close();
    removeKeyFiles();
  }
}

await main();
