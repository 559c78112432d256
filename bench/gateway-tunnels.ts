/**
 * What a site gateway's relay tunnels cost: one tunnel per machine, as the gateway opens them
 * (sidecar/gateway/relay-tunnel.ts), to a Node relay in its own process on loopback.
 *
 *   node --expose-gc bench/gateway-tunnels.ts [MACHINES] [SECONDS]
 *
 * Opens MACHINES tunnels (default 100) for peers seeded into the relay's store, and reports the
 * gateway process's memory per tunnel (after a full collection, against the same process before
 * the tunnels) and the datagrams per second the relay received when every machine sends one
 * 148-byte datagram per wakeup, round robin, for SECONDS (default 5): one WebSocket message each,
 * the worst case for batching, as slow UDP machines send.
 */

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openRelayTunnel, relayApiUrl } from "../sidecar/gateway/relay-tunnel.ts";
import { createLogger } from "../sidecar/log.ts";
import { NO_PROXY } from "../sidecar/net/proxy.ts";
import type { NodeTransport } from "../sidecar/transport/transport.ts";

const machines = Number(process.argv[2] ?? 100);
const seconds = Number(process.argv[3] ?? 5);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc");

const data = mkdtempSync(join(tmpdir(), "gateway-bench-"));
const relayScript = fileURLToPath(new URL("support/node-relay.ts", import.meta.url));
const relay = spawn(process.execPath, [relayScript, data, "bench", String(machines)], {
  stdio: ["ignore", "pipe", "inherit"],
});
const info = await new Promise<{ url: string; adminSecret: string; virtualAddresses: string[] }>(
  (resolve) => {
    relay.stdout.once("data", (chunk: Buffer) => resolve(JSON.parse(chunk.toString())));
  },
);

async function relayDatagrams(): Promise<number> {
  const response = await fetch(`${info.url}/v1/networks/bench/metrics`, {
    headers: { authorization: `Bearer ${info.adminSecret}` },
  });
  const text = await response.text();
  if (process.env.BENCH_DEBUG) process.stderr.write(text);
  let total = 0;
  for (const match of text.matchAll(
    /^siderolink_relay_(?:datagrams|drops)_total\{([^}]*)\} (\d+)/gm,
  )) {
    // With no uplink connected, every node datagram that reaches the switch is a no_uplink drop.
    if (/direction="node_to_uplink"|reason="no_uplink"/.test(match[1])) total += Number(match[2]);
  }
  return total;
}

function memory(): { heap: number; rss: number } {
  gc!();
  gc!();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed + usage.external, rss: usage.rss };
}

const log = createLogger("bench", { level: "error" });
const url = new URL(info.url);
const target = {
  origin: url.origin,
  api: relayApiUrl(url),
  network: "bench",
  tls: { insecure: false },
  proxy: NO_PROXY,
  transport: "websocket" as const,
};
const before = memory();
const opened = performance.now();
const tunnels: NodeTransport[] = info.virtualAddresses.map((address) =>
  openRelayTunnel(target, `[${address}]:50888`, {
    onDatagrams: () => {},
    onTerminal: (reason) => {
      throw new Error(`relay refused a tunnel: ${reason}`);
    },
    log,
  }),
);
while (tunnels.some((tunnel) => tunnel.state !== "connected")) {
  await new Promise((resolve) => setTimeout(resolve, 20));
}
const openMs = performance.now() - opened;
const after = memory();

// Shaped as a WireGuard transport message (type 4, three zero bytes), so the relay switches it.
const datagram = new Uint8Array(148);
datagram[0] = 4;
const one = [datagram];
const relayBefore = await relayDatagrams();
const started = performance.now();
let sent = 0;
while (performance.now() - started < seconds * 1000) {
  for (const tunnel of tunnels) tunnel.send(one);
  sent += tunnels.length;
  await new Promise((resolve) => setImmediate(resolve));
}
const elapsed = (performance.now() - started) / 1000;
await new Promise((resolve) => setTimeout(resolve, 500));
const received = (await relayDatagrams()) - relayBefore;
const dropped = tunnels.reduce((n, t) => n + t.stats.dropsCongested + t.stats.dropsNotConnected, 0);

process.stdout.write(
  `${JSON.stringify(
    {
      machines,
      openAllMs: Math.round(openMs),
      perTunnelHeapKiB: Math.round((after.heap - before.heap) / machines / 1024),
      perTunnelRssKiB: Math.round((after.rss - before.rss) / machines / 1024),
      sentPerSecond: Math.round(sent / elapsed),
      relayReceivedPerSecond: Math.round(received / elapsed),
      droppedAtGateway: dropped,
    },
    null,
    2,
  )}\n`,
);
await Promise.all(tunnels.map((tunnel) => tunnel.close()));
relay.kill("SIGTERM");
rmSync(data, { recursive: true, force: true });
