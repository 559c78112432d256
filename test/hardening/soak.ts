/**
 * The soak: many node tunnels against a Node relay process over loopback, with random
 * connect/disconnect churn and traffic both ways, then checks that the relay gave back what it
 * took. Nodes are WebSocket clients speaking the shared frame codec (no TUN, no WireGuard: the
 * relay only looks at message type and length). Phases:
 *
 *   1. provision every node (Connect JSON), connect the uplink, settle: baseline heap and fds
 *   2. churn for `durationMs`: each node connects, sends a batch every `batchIntervalMs` for a
 *      random time, closes, waits, reconnects; now and then a node sends junk or a burst over
 *      its token bucket, and the uplink reconnects once halfway (its gap drops as no_uplink)
 *   3. every node closes; once the hub holds none: heap and fds again, and the counters
 *
 * Accounting (each datagram counted once at the relay's ingress):
 *   sent by nodes  = forwarded to uplink + not_wireguard + no_uplink + rate_limited
 *   sent by uplink = forwarded to nodes + unknown_peer
 * and every forwarded datagram arrives or is counted as queue_full or stream_closed.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import { x25519 } from "@noble/curves/ed25519.js";
import { WebSocket } from "ws";
import type { HubMetrics } from "../../relay/hub/metrics.ts";
import { parseAddrPort } from "../../shared/net/ip.ts";
import { PEER_ADDRESS_HEADER, tunnelPath, uplinkPath } from "../../shared/siderolink/relay-api.ts";
import { decodeControl, decodePeerDatagrams } from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import { FrameType, PING_TEXT, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";
import { RelayProcess } from "./support/relay-process.ts";

export interface SoakOptions {
  readonly dataDir: string;
  readonly tunnels: number;
  readonly durationMs: number;
  /** How long a node stays connected: uniform in [min, max]. */
  readonly connectedMs: readonly [number, number];
  /** How long a node stays away between connections. */
  readonly awayMs: readonly [number, number];
  readonly batchIntervalMs: number;
  /** Provision calls in flight at once. */
  readonly provisionConcurrency?: number;
  readonly log?: (line: string) => void;
}

export interface SoakReport {
  readonly tunnels: number;
  readonly durationMs: number;
  /** Most node streams the hub held at once (sampled). */
  readonly peakTunnels: number;
  readonly connections: number;
  readonly sentByNodes: number;
  readonly sentByUplink: number;
  readonly receivedByUplink: number;
  readonly receivedByNodes: number;
  readonly metrics: HubMetrics;
  readonly heapBefore: number;
  readonly heapPeak: number;
  readonly heapAfter: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly fdsBefore: number;
  readonly fdsPeak: number;
  readonly fdsAfter: number;
  /** Relay output, for a look for secrets. */
  readonly relayLog: string;
  readonly secrets: readonly string[];
}

const NETWORK = "soak";
const SIZES = [64, 148, 92, 1280, 400];
const JUNK_EVERY = 97;
const BURST_EVERY = 211;
const BURST_SIZE = 200;
/** The soak's node bucket: ordinary nodes (a few datagrams a second) never reach it. */
const NODE_BURST = 64;
const NODE_RATE = 32;

interface Node {
  readonly addrPort: string;
  readonly tagKey: string;
  ws: WebSocket | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const unlimited = { burst: 1e9, perSecond: 1e9 };
  const relay = await RelayProcess.start({
    dataDir: options.dataDir,
    network: NETWORK,
    operatorToken: `operator-${randomUUID()}`,
    limits: {
      provisionPerClient: unlimited,
      provisionFailuresPerClient: unlimited,
      provisionPerNetwork: unlimited,
      maxTunnels: options.tunnels + 16,
    },
    hubLimits: { nodeBurst: NODE_BURST, nodeDatagramsPerSecond: NODE_RATE },
  });
  const summary = relay.network!;
  const wsBase = relay.url.replace(/^http/, "ws");
  let sentByNodes = 0;
  let sentByUplink = 0;
  let receivedByUplink = 0;
  let receivedByNodes = 0;
  let connections = 0;
  let stopping = false;

  try {
    // The relay pins the first uplink's key: every reconnect presents the same one.
    const serverKey = x25519.getPublicKey(x25519.utils.randomSecretKey());
    let uplink = await openUplink(
      wsBase,
      summary.uplinkSecret!,
      serverKey,
      () => receivedByUplink++,
    );
    log(`relay pid ${relay.pid} at ${relay.url}; provisioning ${options.tunnels} nodes`);
    const nodes = await provisionAll(
      relay.port,
      summary.joinToken!,
      options.tunnels,
      options.provisionConcurrency ?? 16,
    );
    const byTag = new Map(nodes.map((node) => [node.tagKey, node]));

    await settle();
    const before = await relay.stats();
    const fdsBefore = relay.fdCount();
    log(`baseline: heap ${mib(before.heapUsed)} MiB, rss ${mib(before.rss)} MiB, fds ${fdsBefore}`);

    const rand = (range: readonly [number, number]) =>
      range[0] + Math.random() * (range[1] - range[0]);
    const nodeEncoder = createBatchEncoder(false);
    let batches = 0;
    const sendBatch = (node: Node) => {
      const ws = node.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      batches++;
      const count = batches % BURST_EVERY === 0 ? BURST_SIZE : 1 + (batches % 4);
      for (let i = 0; i < count; i++) {
        const junk = batches % JUNK_EVERY === 0 && i === 0;
        const datagram = new Uint8Array(SIZES[(batches + i) % SIZES.length]);
        datagram[0] = junk ? 0x42 : 4;
        nodeEncoder.add(datagram);
      }
      ws.send(nodeEncoder.finish().slice());
      sentByNodes += count;
    };

    const connect = (node: Node) => {
      if (stopping) return;
      connections++;
      const ws = new WebSocket(`${wsBase}${tunnelPath(NETWORK)}`, {
        headers: { [PEER_ADDRESS_HEADER]: node.addrPort },
        perMessageDeflate: false,
      });
      node.ws = ws;
      ws.on("error", () => {});
      ws.on("message", (data: Buffer, isBinary) => {
        if (isBinary) receivedByNodes += countNodeDatagrams(data);
      });
      ws.on("open", () => {
        const leaveAt = Date.now() + rand(options.connectedMs);
        const tick = () => {
          if (stopping || Date.now() >= leaveAt) {
            ws.close(1000, "churn");
            node.timer = stopping
              ? undefined
              : setTimeout(() => connect(node), rand(options.awayMs));
            return;
          }
          sendBatch(node);
          node.timer = setTimeout(tick, options.batchIntervalMs * (0.5 + Math.random()));
        };
        tick();
      });
      ws.on("close", () => {
        if (node.ws === ws) node.ws = undefined;
      });
    };

    // Staggered starts, so connections do not all arrive in one tick.
    for (const node of nodes)
      node.timer = setTimeout(() => connect(node), Math.random() * options.awayMs[1]);

    const peerEncoder = createBatchEncoder(true);
    const tags = [...byTag.keys()];
    const uplinkTraffic = setInterval(() => {
      if (uplink.readyState !== WebSocket.OPEN) return;
      for (let i = 0; i < 8; i++) {
        const node = byTag.get(tags[Math.floor(Math.random() * tags.length)])!;
        const datagram = new Uint8Array(SIZES[i % SIZES.length]);
        datagram[0] = 4;
        peerEncoder.add(datagram, parseAddrPort(node.addrPort).address);
      }
      uplink.send(peerEncoder.finish().slice());
      sentByUplink += 8;
    }, 20);

    let heapPeak = before.heapUsed;
    let fdsPeak = fdsBefore;
    let peakTunnels = 0;
    const started = Date.now();
    let blipped = false;
    while (Date.now() - started < options.durationMs) {
      await sleep(Math.min(2_000, options.durationMs / 10));
      const stats = await relay.stats();
      const hub = stats.hubs[NETWORK];
      heapPeak = Math.max(heapPeak, stats.heapUsed);
      fdsPeak = Math.max(fdsPeak, relay.fdCount());
      peakTunnels = Math.max(peakTunnels, hub.nodes);
      log(
        `t+${Math.round((Date.now() - started) / 1000)} s: ${hub.nodes} tunnels, ${connections} connections so far, heap ${mib(stats.heapUsed)} MiB, fds ${relay.fdCount()}`,
      );
      if (!blipped && Date.now() - started > options.durationMs / 2) {
        blipped = true;
        // The uplink goes away and comes back: nodes' datagrams in the gap drop as no_uplink.
        await closeSocket(uplink);
        await sleep(200);
        uplink = await openUplink(
          wsBase,
          summary.uplinkSecret!,
          serverKey,
          () => receivedByUplink++,
        );
      }
    }

    stopping = true;
    clearInterval(uplinkTraffic);
    for (const node of nodes) {
      clearTimeout(node.timer);
      // Closed with the closing handshake, never reset: a reset would lose datagrams already
      // written to the socket, beyond what the relay can count. A socket still connecting
      // closes itself on open (its first tick sees `stopping`).
      if (node.ws?.readyState === WebSocket.OPEN) node.ws.close(1000, "soak over");
    }
    await waitFor(
      async () => (await relay.stats()).hubs[NETWORK].nodes === 0,
      20_000,
      "every tunnel closed",
    );
    await settle();
    const after = await relay.stats();
    const fdsAfter = relay.fdCount();
    await closeSocket(uplink);
    log(`after: heap ${mib(after.heapUsed)} MiB, rss ${mib(after.rss)} MiB, fds ${fdsAfter}`);
    return {
      tunnels: options.tunnels,
      durationMs: options.durationMs,
      peakTunnels,
      connections,
      sentByNodes,
      sentByUplink,
      receivedByUplink,
      receivedByNodes,
      metrics: after.hubs[NETWORK].metrics,
      heapBefore: before.heapUsed,
      heapPeak,
      heapAfter: after.heapUsed,
      rssBefore: before.rss,
      rssAfter: after.rss,
      fdsBefore,
      fdsPeak,
      fdsAfter,
      relayLog: relay.log.join(""),
      secrets: [summary.adminSecret, summary.uplinkSecret, summary.joinToken!.split(".")[1]],
    };
  } finally {
    stopping = true;
    await relay.stop();
  }
}

/** Provisions `count` nodes over Connect JSON on fresh connections (none stays open). */
async function provisionAll(
  port: number,
  joinToken: string,
  count: number,
  concurrency: number,
): Promise<Node[]> {
  const nodes: Node[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const reply = (await postJson(port, "/sidero.link.ProvisionService/Provision", {
        nodeUuid: randomUUID(),
        nodePublicKey: Buffer.from(x25519.getPublicKey(x25519.utils.randomSecretKey())).toString(
          "base64",
        ),
        joinToken,
      })) as { grpcPeerAddrPort?: string };
      if (!reply.grpcPeerAddrPort) throw new Error(`Provision failed: ${JSON.stringify(reply)}`);
      const tag = parseAddrPort(reply.grpcPeerAddrPort).address;
      nodes.push({
        addrPort: reply.grpcPeerAddrPort,
        tagKey: Buffer.from(tag).toString("hex"),
        ws: undefined,
        timer: undefined,
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return nodes;
}

export function postJson(
  port: number,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const request = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: "POST",
        agent: false,
        headers: {
          "content-type": "application/json",
          connection: "close",
          "content-length": Buffer.byteLength(text),
          ...headers,
        },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString()));
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    request.on("error", reject);
    request.end(text);
  });
}

/** Opens the uplink, says HELLO, acknowledges every peer message and counts datagrams. */
async function openUplink(
  wsBase: string,
  uplinkSecret: string,
  serverKey: Uint8Array,
  onDatagram: () => void,
): Promise<WebSocket> {
  const ws = new WebSocket(`${wsBase}${uplinkPath(NETWORK)}`, {
    headers: { authorization: `Bearer ${uplinkSecret}` },
    perMessageDeflate: false,
  });
  const tags: Uint8Array[] = [];
  const views: Uint8Array[] = [];
  let ready: () => void = () => {};
  const listed = new Promise<void>((resolve) => {
    ready = resolve;
  });
  ws.on("error", () => {});
  ws.on("message", (data: Buffer, isBinary) => {
    if (!isBinary) return;
    const frame = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (frame[0] === FrameType.PeerDatagrams) {
      const count = decodePeerDatagrams(frame, tags, views);
      for (let i = 0; i < count; i++) onDatagram();
      return;
    }
    const message = decodeControl(frame);
    if (message.type === FrameType.PeerList && !message.last) return;
    if (message.type === FrameType.Hello || message.type === FrameType.Ack) return;
    ws.send(encodeAck(message.seq));
    if (message.type === FrameType.PeerList) ready();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("unexpected-response", () => reject(new Error("uplink refused")));
  });
  ws.send(encodeHello(PROTOCOL_VERSION, serverKey));
  const keepAlive = setInterval(
    () => ws.readyState === WebSocket.OPEN && ws.send(PING_TEXT),
    10_000,
  );
  ws.on("close", () => clearInterval(keepAlive));
  await listed;
  return ws;
}

function countNodeDatagrams(frame: Buffer): number {
  let count = 0;
  for (let offset = 1; offset + 2 <= frame.length; count++)
    offset += 2 + frame.readUInt16BE(offset);
  return count;
}

async function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = new Promise((resolve) => ws.once("close", resolve));
  ws.close(1000, "done");
  await Promise.race([closed, sleep(3_000)]);
}

/** Lets sockets finish closing and timers run before a measurement. */
async function settle(): Promise<void> {
  await sleep(1_500);
}

async function waitFor(
  probe: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}

/** Heap the relay may keep above its baseline once every tunnel is gone (caches, JIT code). */
export const HEAP_SLACK_BYTES = 8 * 1024 * 1024;
/** File descriptors the relay may hold above its baseline (none expected). */
export const FD_SLACK = 2;

/** What a soak must show; each failure as a sentence with the figures. */
export function soakFailures(report: SoakReport): string[] {
  const m = report.metrics;
  const failures: string[] = [];
  const nodeSide =
    m.nodeToUplinkDatagrams + m.drops.not_wireguard + m.drops.no_uplink + m.drops.rate_limited;
  if (report.sentByNodes !== nodeSide) {
    failures.push(
      `nodes sent ${report.sentByNodes} datagrams but the relay accounts for ${nodeSide} (forwarded ${m.nodeToUplinkDatagrams} + not_wireguard ${m.drops.not_wireguard} + no_uplink ${m.drops.no_uplink} + rate_limited ${m.drops.rate_limited})`,
    );
  }
  const uplinkSide = m.uplinkToNodeDatagrams + m.drops.unknown_peer;
  if (report.sentByUplink !== uplinkSide) {
    failures.push(
      `the uplink sent ${report.sentByUplink} datagrams but the relay accounts for ${uplinkSide} (forwarded ${m.uplinkToNodeDatagrams} + unknown_peer ${m.drops.unknown_peer})`,
    );
  }
  // Forwarded datagrams either arrive or are counted where they died (queue_full when a
  // congested destination's backlog overflowed, stream_closed when it was closing).
  const forwarded = m.nodeToUplinkDatagrams + m.uplinkToNodeDatagrams;
  const accounted =
    report.receivedByUplink + report.receivedByNodes + m.drops.queue_full + m.drops.stream_closed;
  if (forwarded !== accounted) {
    failures.push(
      `the relay forwarded ${forwarded} datagrams; received ${report.receivedByUplink + report.receivedByNodes} + queue_full ${m.drops.queue_full} + stream_closed ${m.drops.stream_closed} = ${accounted}`,
    );
  }
  for (const reason of ["not_wireguard", "no_uplink", "rate_limited", "unknown_peer"] as const) {
    if (m.drops[reason] === 0)
      failures.push(`no ${reason} drops: the soak did not exercise that path`);
  }
  if (report.heapAfter > report.heapBefore + HEAP_SLACK_BYTES) {
    failures.push(
      `relay heap ${mib(report.heapAfter)} MiB after the churn, baseline ${mib(report.heapBefore)} MiB (slack ${mib(HEAP_SLACK_BYTES)} MiB)`,
    );
  }
  if (report.fdsAfter > report.fdsBefore + FD_SLACK) {
    failures.push(
      `relay holds ${report.fdsAfter} file descriptors after the churn, ${report.fdsBefore} before`,
    );
  }
  if (report.peakTunnels < report.tunnels / 4) {
    failures.push(`only ${report.peakTunnels} of ${report.tunnels} tunnels were open at once`);
  }
  for (const secret of report.secrets) {
    if (report.relayLog.includes(secret)) failures.push("the relay's output contains a secret");
  }
  return failures;
}

/** The report as the lines docs/reliability.md quotes. */
export function formatSoak(report: SoakReport): string {
  const m = report.metrics;
  return [
    `tunnels: ${report.tunnels} nodes, peak ${report.peakTunnels} open at once, ${report.connections} connections over ${Math.round(report.durationMs / 1000)} s`,
    `datagrams node->uplink: sent ${report.sentByNodes}, forwarded ${m.nodeToUplinkDatagrams}, received ${report.receivedByUplink}`,
    `datagrams uplink->node: sent ${report.sentByUplink}, forwarded ${m.uplinkToNodeDatagrams}, received ${report.receivedByNodes}`,
    `drops: ${Object.entries(m.drops)
      .map(([reason, n]) => `${reason} ${n}`)
      .join(", ")}`,
    `relay heap (after GC): before ${mib(report.heapBefore)} MiB, peak ${mib(report.heapPeak)} MiB, after ${mib(report.heapAfter)} MiB; rss before ${mib(report.rssBefore)} MiB, after ${mib(report.rssAfter)} MiB`,
    `relay fds: before ${report.fdsBefore}, peak ${report.fdsPeak}, after ${report.fdsAfter}`,
  ].join("\n");
}
