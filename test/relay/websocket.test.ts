/** Node streams and the server uplink over real WebSockets against the Node relay. */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseAddrPort } from "../../shared/net/ip.ts";
import { createBatchEncoder } from "../../shared/tunnel/encode.ts";
import { CloseCode, FrameType, MAX_FRAME_SIZE } from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";
import {
  base64,
  createNetwork,
  markerOf,
  NodeStream,
  randomKey,
  startRelay,
  tempDir,
  transportMessage,
  Uplink,
} from "./helpers.ts";

interface Node {
  readonly addrPort: string;
  readonly tag: Uint8Array;
}

async function provisionNode(server: RelayServer, joinToken: string, uuid: string): Promise<Node> {
  const client = createClient(ProvisionService, createGrpcWebTransport({ baseUrl: server.url }));
  const reply = await client.provision({
    nodeUuid: uuid,
    nodePublicKey: base64(randomKey()),
    joinToken,
  });
  return { addrPort: reply.grpcPeerAddrPort, tag: parseAddrPort(reply.grpcPeerAddrPort).address };
}

describe("tunnel streams over WebSocket", () => {
  const dir = tempDir();
  let server: RelayServer;
  let uplink: Uplink;
  let a: Node;
  let b: Node;
  const sockets: { close(): void }[] = [];
  const stream = (node: Node, via: "header" | "query" = "header") => {
    const socket = new NodeStream(server, "ws", node.addrPort, via);
    sockets.push(socket);
    return socket;
  };

  before(async () => {
    server = await startRelay(dir.path);
    const network = await createNetwork(server, "ws");
    uplink = new Uplink(server, "ws", network.adminSecret);
    sockets.push(uplink);
    await uplink.ready();
    a = await provisionNode(server, network.joinToken!, "node-a");
    b = await provisionNode(server, network.joinToken!, "node-b");
  });

  after(async () => {
    for (const socket of sockets) socket.close();
    await server.close();
    dir.remove();
  });

  test('an address that is not a provisioned peer is closed with "peer not allowed"', async () => {
    for (const via of ["header", "query"] as const) {
      const stranger = stream(
        { addrPort: "[fdae:41e4:649b:9304::1234]:50888", tag: new Uint8Array(16) },
        via,
      );
      assert.deepEqual(await stranger.waitClosed(), {
        code: CloseCode.PeerNotAllowed,
        reason: "peer not allowed",
      });
    }
  });

  test("an uplink with a wrong admin secret is refused", async () => {
    const impostor = new Uplink(server, "ws", "not-the-secret");
    sockets.push(impostor);
    const closed = await impostor.waitClosed();
    assert.equal(closed.code, CloseCode.Unauthorized);
    assert.match(closed.reason, /invalid admin secret/);
  });

  test("batches flow both ways, each datagram to its own node", async () => {
    const streamA = stream(a);
    const streamB = stream(b, "query");
    await Promise.all([streamA.opened, streamB.opened]);
    const runtime = await server.directory.runtime("ws");
    await eventually("both streams in the hub", () => runtime.hub.nodeCount === 2 || undefined);

    streamA.sendDatagrams([transportMessage(1), transportMessage(2, 200), transportMessage(3)]);
    await eventually(
      "three datagrams at the uplink",
      () => uplink.received.length >= 3 || undefined,
    );
    assert.deepEqual(
      uplink.received.map((r) => markerOf(r.datagram)),
      [1, 2, 3],
    );
    for (const r of uplink.received) assert.deepEqual(r.tag, a.tag);

    uplink.sendDatagrams([
      { tag: a.tag, datagram: transportMessage(10) },
      { tag: b.tag, datagram: transportMessage(20) },
      { tag: a.tag, datagram: transportMessage(11) },
      { tag: b.tag, datagram: transportMessage(21) },
    ]);
    await eventually(
      "two datagrams at each node",
      () => (streamA.datagrams().length >= 2 && streamB.datagrams().length >= 2) || undefined,
    );
    assert.deepEqual(streamA.datagrams().map(markerOf), [10, 11]);
    assert.deepEqual(streamB.datagrams().map(markerOf), [20, 21]);
    assert.equal(streamA.binary.length, 1, "node A got its two datagrams in one batch message");
    streamA.close();
    streamB.close();
    await eventually("both streams gone", () => runtime.hub.nodeCount === 0 || undefined);
  });

  test("a node can never reach another node", async () => {
    const streamA = stream(a);
    const streamB = stream(b);
    await Promise.all([streamA.opened, streamB.opened]);
    const runtime = await server.directory.runtime("ws");
    await eventually("both streams in the hub", () => runtime.hub.nodeCount === 2 || undefined);
    const before = uplink.received.length;
    streamA.sendDatagrams([transportMessage(30)]);
    await eventually(
      "the datagram at the uplink",
      () => uplink.received.length > before || undefined,
    );
    // A tagged frame from a node (trying to name node B) is not a node's frame at all.
    const encoder = createBatchEncoder(true);
    encoder.add(transportMessage(31), b.tag);
    streamA.send(encoder.finish().slice());
    const closed = await streamA.waitClosed();
    assert.equal(closed.code, CloseCode.Malformed);
    assert.match(closed.reason, /unexpected frame type 0x02/);
    // B still works and never saw 30 or 31.
    uplink.sendDatagrams([{ tag: b.tag, datagram: transportMessage(32) }]);
    await eventually("B's datagram", () => streamB.datagrams().length >= 1 || undefined);
    assert.deepEqual(streamB.datagrams().map(markerOf), [32]);
    assert.deepEqual(
      uplink.received.slice(before).map((r) => markerOf(r.datagram)),
      [30],
    );
    streamB.close();
  });

  test('a second stream for the same address ends the first with "peer replaced"', async () => {
    const first = stream(a);
    await first.opened;
    const runtime = await server.directory.runtime("ws");
    await eventually(
      "the first stream in the hub",
      () => runtime.hub.hasNode(formatTag(a)) || undefined,
    );
    const second = stream(a, "query");
    assert.deepEqual(await first.waitClosed(), {
      code: CloseCode.Replaced,
      reason: "peer replaced",
    });
    await second.opened;
    uplink.sendDatagrams([{ tag: a.tag, datagram: transportMessage(40) }]);
    await eventually(
      "the datagram on the second stream",
      () => second.datagrams().length >= 1 || undefined,
    );
    assert.equal(markerOf(second.datagrams()[0]), 40);
    second.close();
  });

  test("malformed, oversized and stray text messages close only their own stream", async () => {
    const runtime = await server.directory.runtime("ws");
    const bystander = stream(b);
    await bystander.opened;
    const cases: [string, Uint8Array | string, number, RegExp][] = [
      [
        "unknown type",
        new Uint8Array([0x7f, 1, 2]),
        CloseCode.Malformed,
        /unknown frame type 0x7f/,
      ],
      [
        "truncated batch",
        new Uint8Array([FrameType.NodeDatagrams, 0, 10, 1, 2]),
        CloseCode.Malformed,
        /claims 10 bytes/,
      ],
      ["empty message", new Uint8Array(0), CloseCode.Malformed, /empty frame/],
      ["text", "hello", CloseCode.Malformed, /unexpected text message/],
      // ws refuses it from the frame header, before reading the payload; its reason is empty.
      ["oversized", new Uint8Array(MAX_FRAME_SIZE + 1), CloseCode.TooBig, /^$/],
    ];
    for (const [name, message, code, reason] of cases) {
      const offender = stream(a);
      await offender.opened;
      offender.send(message);
      const closed = await offender.waitClosed();
      assert.equal(closed.code, code, `${name}: ${closed.reason}`);
      assert.match(closed.reason, reason, name);
    }
    assert.equal(bystander.closed, undefined, "the other node's stream stayed open");
    assert.equal(uplink.closed, undefined, "the uplink stayed open");
    await eventually(
      "the hub to hold only the bystander",
      () => runtime.hub.nodeCount === 1 || undefined,
    );
    uplink.sendDatagrams([{ tag: b.tag, datagram: transportMessage(50) }]);
    await eventually(
      "the bystander's datagram",
      () => bystander.datagrams().some((d) => markerOf(d) === 50) || undefined,
    );
    bystander.send("ping");
    await eventually("pong", () => bystander.text.includes("pong") || undefined);
    assert.ok(runtime.hub.metrics.malformedFrames >= 4);
    bystander.close();
  });
});

describe("queues under a flood", () => {
  const dir = tempDir();
  let server: RelayServer;
  const sockets: { close(): void }[] = [];

  before(async () => {
    server = await startRelay(dir.path, {
      hubLimits: { nodeQueue: { datagrams: 8, bytes: 16 * 1024 }, highWaterBytes: 64 * 1024 },
    });
  });

  after(async () => {
    for (const socket of sockets) socket.close();
    await server.close();
    dir.remove();
  });

  test("a node that stops reading costs a bounded backlog; the oldest datagrams are dropped and counted", async () => {
    const network = await createNetwork(server, "flood");
    const uplink = new Uplink(server, "flood", network.adminSecret);
    sockets.push(uplink);
    await uplink.ready();
    const node = await provisionNode(server, network.joinToken!, "slow");
    const slow = new NodeStream(server, "flood", node.addrPort);
    sockets.push(slow);
    await slow.opened;
    const runtime = await server.directory.runtime("flood");
    await eventually("the stream in the hub", () => runtime.hub.nodeCount === 1 || undefined);
    // Stop reading: the kernel buffers fill, then the relay's ws bufferedAmount grows.
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();

    // Flood until the relay drops (kernel socket buffers absorb the first few MB), then as
    // much again; at most 40k datagrams of 1200 bytes.
    let total = 0;
    let maxQueued = 0;
    let target = 40_000;
    while (total < target) {
      uplink.sendDatagrams(
        Array.from({ length: 50 }, (_, i) => ({
          tag: node.tag,
          datagram: transportMessage(total + i, 1200),
        })),
      );
      total += 50;
      await new Promise((resolve) => setTimeout(resolve, 2));
      maxQueued = Math.max(maxQueued, runtime.hub.queuedDatagrams);
      if (runtime.hub.metrics.drops.queue_full > 0 && target === 40_000) target = total * 2;
    }
    await eventually(
      "the relay to switch everything",
      () => runtime.hub.metrics.uplinkToNodeDatagrams === total || undefined,
    );
    assert.ok(runtime.hub.metrics.drops.queue_full > 0, "the flood caused drops");
    assert.ok(maxQueued <= 8, `backlog stayed within its 8 datagrams (saw ${maxQueued})`);

    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const forwarded = runtime.hub.metrics.uplinkToNodeDatagrams;
    await eventually(
      "everything sent or dropped",
      () => {
        const got = slow.datagrams().length;
        return got + runtime.hub.metrics.drops.queue_full >= forwarded || undefined;
      },
      10_000,
    );
    const markers = slow.datagrams().map(markerOf);
    assert.ok(
      markers.length < total,
      `some datagrams were dropped (${markers.length} of ${total} arrived)`,
    );
    assert.equal(
      markers.length + runtime.hub.metrics.drops.queue_full,
      total,
      "every datagram arrived or was counted",
    );
    assert.ok(
      markers.every((m, i) => i === 0 || m > markers[i - 1]),
      "order kept",
    );
    assert.equal(markers.at(-1), total - 1, "the newest datagram survived (drop-oldest)");
  });
});

function formatTag(node: Node): string {
  return node.addrPort.slice(1, node.addrPort.indexOf("]"));
}

describe("liveness", () => {
  const dir = tempDir();
  let server: RelayServer;
  const sockets: { close(): void }[] = [];

  before(async () => {
    server = await startRelay(dir.path, {
      hubLimits: { livenessTimeoutMs: 400 },
      sweepIntervalMs: 100,
    });
  });

  after(async () => {
    for (const socket of sockets) socket.close();
    await server.close();
    dir.remove();
  });

  test("a silent stream is closed; one that pings stays", async () => {
    const network = await createNetwork(server, "alive");
    const uplink = new Uplink(server, "alive", network.adminSecret);
    sockets.push(uplink);
    await uplink.ready();
    const quiet = new NodeStream(
      server,
      "alive",
      (await provisionNode(server, network.joinToken!, "quiet")).addrPort,
    );
    const chatty = new NodeStream(
      server,
      "alive",
      (await provisionNode(server, network.joinToken!, "chatty")).addrPort,
    );
    sockets.push(quiet, chatty);
    await Promise.all([quiet.opened, chatty.opened]);
    const timer = setInterval(() => {
      chatty.send("ping");
      uplink.send("ping");
    }, 100);
    try {
      const closed = await quiet.waitClosed();
      assert.equal(closed.code, CloseCode.LivenessTimeout);
      assert.match(closed.reason, /nothing received for \d+ s \(limit 0\.4 s\)/);
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.equal(chatty.closed, undefined);
      assert.equal(uplink.closed, undefined);
      assert.ok(chatty.text.filter((t) => t === "pong").length >= 3);
    } finally {
      clearInterval(timer);
    }
  });
});
