/**
 * What only the Node relay's WebSocket streams are tested for here: bounded queues under a flood
 * and the liveness sweep. (Switching, refusals, replacement, isolation and frame errors: the
 * relay contract, test/contract/.)
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseAddrPort } from "../../shared/net/ip.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
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
    const uplink = new Uplink(server, "flood", network.uplinkSecret);
    sockets.push(uplink);
    await uplink.ready();
    const node = await provisionNode(
      server,
      network.joinToken!,
      "00000000-0000-4000-8000-00000000510e",
    );
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
    const uplink = new Uplink(server, "alive", network.uplinkSecret);
    sockets.push(uplink);
    await uplink.ready();
    // The uplink pings from the start: provisioning may outlast the short timeout on a busy host.
    let chatty: NodeStream | undefined;
    const timer = setInterval(() => {
      chatty?.send("ping");
      uplink.send("ping");
    }, 100);
    try {
      const quiet = new NodeStream(
        server,
        "alive",
        (await provisionNode(server, network.joinToken!, "00000000-0000-4000-8000-0000000a1e17"))
          .addrPort,
      );
      chatty = new NodeStream(
        server,
        "alive",
        (await provisionNode(server, network.joinToken!, "00000000-0000-4000-8000-00000000c4a7"))
          .addrPort,
      );
      sockets.push(quiet, chatty);
      await Promise.all([quiet.opened, chatty.opened]);
      const closed = await quiet.waitClosed();
      assert.equal(closed.code, CloseCode.LivenessTimeout);
      assert.match(closed.reason, /nothing received for \d+ s \(limit 0\.4 s\)/);
      // A second silent stream, opened now, is the marker: once the sweep has closed it too,
      // the chatty stream has lived through more than twice the timeout.
      const marker = new NodeStream(
        server,
        "alive",
        (await provisionNode(server, network.joinToken!, "00000000-0000-4000-8000-0000000a4e55"))
          .addrPort,
      );
      sockets.push(marker);
      assert.equal((await marker.waitClosed()).code, CloseCode.LivenessTimeout);
      assert.equal(chatty.closed, undefined);
      assert.equal(uplink.closed, undefined);
      assert.ok(chatty.text.filter((t) => t === "pong").length >= 3);
    } finally {
      clearInterval(timer);
    }
  });
});
