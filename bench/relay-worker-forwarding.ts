/**
 * Datagrams per second through one network's Durable Object in local workerd (Miniflare), for
 * several batch sizes: one node stream sends NODE_DATAGRAMS frames of B WireGuard transport
 * messages each to the server uplink (node -> uplink), then the uplink sends PEER_DATAGRAMS
 * frames of B tagged datagrams to the node (uplink -> node). A window of in-flight messages
 * keeps workerd's buffers short, so the rate is what the object sustains, not what it queues.
 *
 *   node bench/relay-worker-forwarding.ts [--seconds 3] [--repetitions 3] [--size 128]
 *     [--batches 1,8,32,64] [--window 32]
 *
 * Each configuration runs `repetitions` times, interleaved; the median rate is reported. Every
 * datagram sent must arrive, or the run fails. Client and workerd share the machine's CPUs.
 */
import { parseArgs } from "node:util";
import WebSocket from "ws";
import {
  createNetwork,
  provisionClient,
  provisionWithAck,
  randomKey,
  TestUplink,
  uniqueNetworkName,
} from "../test/worker/support/clients.ts";
import {
  ipv6Bytes,
  nodeFrame,
  peerFrame,
  wireguardMessage,
} from "../test/worker/support/frames.ts";
import { removePersistDirectory, startWorkerRelay } from "../test/worker/support/miniflare.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    repetitions: { type: "string", default: "3" },
    size: { type: "string", default: "128" },
    batches: { type: "string", default: "1,8,32,64" },
    window: { type: "string", default: "32" },
  },
});
const seconds = Number(values.seconds);
const repetitions = Number(values.repetitions);
const size = Number(values.size);
const batches = values.batches.split(",").map(Number);
const window = Number(values.window);

/** Counts the datagrams in a NODE_DATAGRAMS (tagSize 0) or PEER_DATAGRAMS (16) frame. */
function countDatagrams(frame: Buffer, tagSize: number): number {
  let count = 0;
  for (let at = 1; at < frame.length; count++) at += tagSize + 2 + frame.readUInt16BE(at + tagSize);
  return count;
}

interface Result {
  readonly direction: string;
  readonly batch: number;
  readonly messagesPerSecond: number;
  readonly datagramsPerSecond: number;
}

/**
 * Sends `frame` (holding `batch` datagrams) from `sender` as fast as the window allows for
 * `seconds`, counting datagrams at `receiver`.
 */
async function run(
  sender: WebSocket,
  receiver: WebSocket,
  frame: Uint8Array,
  batch: number,
  tagSize: number,
): Promise<{ messages: number; datagrams: number; elapsed: number }> {
  let sent = 0;
  let received = 0;
  let wake: (() => void) | undefined;
  const onMessage = (data: Buffer) => {
    received += countDatagrams(data, tagSize);
    wake?.();
  };
  receiver.on("message", onMessage);
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    while (sent - received / batch < window) {
      sender.send(frame);
      sent++;
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 1000);
    });
  }
  const deadline = performance.now() + 5000;
  while (received < sent * batch && performance.now() < deadline) {
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 100);
    });
  }
  const elapsed = (performance.now() - start) / 1000;
  receiver.off("message", onMessage);
  if (received !== sent * batch) {
    throw new Error(`sent ${sent * batch} datagrams, ${received} arrived`);
  }
  return { messages: sent, datagrams: received, elapsed };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const relay = await startWorkerRelay();
try {
  const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName("bench"));
  const uplink = await new TestUplink(relay.url, network.name, network.adminSecret).hello();
  const { response } = await provisionWithAck(provisionClient(relay.url, "connect"), uplink, {
    nodeUuid: crypto.randomUUID(),
    nodePublicKey: randomKey(),
    joinToken: network.joinToken,
  });
  const tag = ipv6Bytes(response.grpcPeerAddrPort);
  const node = new WebSocket(
    new URL(`/v1/networks/${network.name}/tunnel`, relay.url).href.replace(/^http/, "ws"),
    {
      headers: { "x-siderolink-ipv6-addr": response.grpcPeerAddrPort },
    },
  );
  await new Promise((resolve, reject) => {
    node.once("open", resolve);
    node.once("error", reject);
  });
  const rates = new Map<string, { messages: number[]; datagrams: number[] }>();
  const record = (direction: string, batch: number, sample: Awaited<ReturnType<typeof run>>) => {
    const key = `${direction} ${batch}`;
    const entry = rates.get(key) ?? { messages: [], datagrams: [] };
    entry.messages.push(sample.messages / sample.elapsed);
    entry.datagrams.push(sample.datagrams / sample.elapsed);
    rates.set(key, entry);
  };
  for (let repetition = 0; repetition < repetitions; repetition++) {
    for (const batch of batches) {
      const datagrams = Array.from({ length: batch }, () => wireguardMessage(4, size));
      record(
        "node->uplink",
        batch,
        await run(node, uplink.socket.ws, nodeFrame(datagrams), batch, 16),
      );
      const tagged = peerFrame(datagrams.map((d) => [tag, d]));
      record("uplink->node", batch, await run(uplink.socket.ws, node, tagged, batch, 0));
    }
  }
  const results: Result[] = [...rates].map(([key, entry]) => {
    const [direction, batch] = key.split(" ");
    return {
      direction,
      batch: Number(batch),
      messagesPerSecond: Math.round(median(entry.messages)),
      datagramsPerSecond: Math.round(median(entry.datagrams)),
    };
  });
  console.log(
    `${size}-byte datagrams, ${seconds} s per run, median of ${repetitions}, window ${window} messages`,
  );
  console.table(results);
  node.terminate();
  uplink.socket.close();
} finally {
  await relay.stop();
  await removePersistDirectory(relay);
}
