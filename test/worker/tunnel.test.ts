/**
 * Node streams and the server uplink on the Worker, in real workerd: batches switched both
 * ways, refusals and replacements with their close reasons, isolation of nodes from each other,
 * malformed frames, and a Durable Object evicted while its WebSockets hibernate.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { adminCall, openNodeStream, TestSocket, TestUplink } from "./support/clients.ts";
import {
  ipv6Bytes,
  nodeFrame,
  peerFrame,
  readNodeFrame,
  readPeerFrame,
  wireguardMessage,
} from "./support/frames.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";
import { startTestNetwork, type TestNetwork } from "./support/network.ts";

let relay: WorkerRelay;
const networks: TestNetwork[] = [];

before(async () => {
  relay = await startWorkerRelay();
});

after(async () => {
  for (const network of networks) network.close();
  await relay?.stop();
  if (relay) await removePersistDirectory(relay);
});

async function testNetwork(): Promise<TestNetwork> {
  const network = await startTestNetwork(relay.url, relay.operatorToken);
  networks.push(network);
  return network;
}

/** A drop counter of the network, from its Prometheus text. */
async function drops(net: TestNetwork, reason: string): Promise<number> {
  const { name, adminSecret } = net.network;
  const response = await fetch(new URL(`/v1/networks/${name}/metrics`, relay.url), {
    headers: { authorization: `Bearer ${adminSecret}` },
  });
  const text = await response.text();
  const sample = `siderolink_relay_drops_total{network="${name}",reason="${reason}"} `;
  const line = text.split("\n").find((l) => l.startsWith(sample));
  assert.ok(line, `no ${sample} in\n${text}`);
  return Number(line.slice(sample.length));
}

test("batches flow node to uplink tagged with the node, and back to the node that owns the tag", async () => {
  const net = await testNetwork();
  const [a, b] = [await net.provisionNode(), await net.provisionNode()];
  const [streamA, streamB] = [await net.connect(a), await net.connect(b)];

  const fromA = [wireguardMessage(1), wireguardMessage(4, 200), wireguardMessage(4, 1280)];
  streamA.send(nodeFrame(fromA));
  const upward = readPeerFrame(await net.uplink.nextDatagrams());
  assert.deepEqual(
    upward,
    fromA.map((datagram) => [a.tag, datagram]),
  );

  // One uplink message for two nodes is split into one batch per node, order kept.
  const toA = [wireguardMessage(2), wireguardMessage(4, 64)];
  const toB = [wireguardMessage(4, 1000)];
  net.uplink.socket.send(
    peerFrame([
      [a.tag, toA[0]],
      [b.tag, toB[0]],
      [a.tag, toA[1]],
    ]),
  );
  assert.deepEqual(readNodeFrame(await streamA.nextBinary()), toA);
  assert.deepEqual(readNodeFrame(await streamB.nextBinary()), toB);
});

test("datagrams that are not WireGuard messages are dropped and counted", async () => {
  const net = await testNetwork();
  const node = await net.provisionNode();
  const stream = await net.connect(node);
  const good = wireguardMessage(4, 48);
  const notWireGuard = new Uint8Array([9, 0, 0, 0, ...new Uint8Array(40)]);
  const wrongLength = wireguardMessage(1).subarray(0, 100);
  stream.send(nodeFrame([notWireGuard, good, wrongLength]));
  assert.deepEqual(readPeerFrame(await net.uplink.nextDatagrams()), [[node.tag, good]]);
  assert.equal(await drops(net, "not_wireguard"), 2);
});

test("a stream for an address that is not a provisioned peer closes with 'peer not allowed'", async () => {
  const net = await testNetwork();
  const unknown = openNodeStream(relay.url, net.network.name, "[fdae:41e4:649b:9304::1234]:50888");
  await unknown.wantClosed(4403, "peer not allowed");
  const garbage = openNodeStream(relay.url, net.network.name, "not an address");
  await garbage.wantClosed(4403, "peer not allowed");
  // A provisioned peer of another network is not a peer of this one.
  const other = await testNetwork();
  const stranger = await other.provisionNode();
  const crossing = openNodeStream(relay.url, net.network.name, stranger.peerAddrPort);
  await crossing.wantClosed(4403, "peer not allowed");
});

test("the address may come as a query parameter for clients that cannot set headers", async () => {
  const net = await testNetwork();
  const node = await net.provisionNode();
  const url = new URL(`/v1/networks/${net.network.name}/tunnel`, relay.url);
  url.searchParams.set("x-siderolink-ipv6-addr", node.peerAddrPort);
  const stream = new TestSocket(url.href.replace(/^http/, "ws"));
  await stream.opened;
  const datagram = wireguardMessage(4);
  stream.send(nodeFrame([datagram]));
  assert.deepEqual(readPeerFrame(await net.uplink.nextDatagrams()), [[node.tag, datagram]]);
  stream.close();
});

test("a second stream for the same address ends the first with 'peer replaced'", async () => {
  const net = await testNetwork();
  const node = await net.provisionNode();
  const first = await net.connect(node);
  const second = await net.connect(node);
  await first.wantClosed(4409, "peer replaced");
  const datagram = wireguardMessage(4);
  net.uplink.socket.send(peerFrame([[node.tag, datagram]]));
  assert.deepEqual(readNodeFrame(await second.nextBinary()), [datagram]);
});

test("nodes never reach each other, and datagrams for an unknown tag are dropped", async () => {
  const net = await testNetwork();
  const [a, b] = [await net.provisionNode(), await net.provisionNode()];
  const [streamA, streamB] = [await net.connect(a), await net.connect(b)];
  // A node frame has no destination field: whatever A sends goes to the uplink, tagged A.
  const datagram = wireguardMessage(4);
  streamA.send(nodeFrame([datagram]));
  assert.deepEqual(readPeerFrame(await net.uplink.nextDatagrams()), [[a.tag, datagram]]);
  // A node that sends a PEER_DATAGRAMS frame naming B is closed, and B hears nothing.
  streamA.send(peerFrame([[b.tag, wireguardMessage(4)]]));
  await streamA.wantClosed(1007, /unexpected frame type/);
  net.uplink.socket.send(
    peerFrame([[ipv6Bytes("fdae:41e4:649b:9304::dead"), wireguardMessage(4)]]),
  );
  await streamB.wantNoBinary();
  assert.equal(await drops(net, "unknown_peer"), 1);
});

test("a malformed or oversized frame closes only the stream that sent it", async () => {
  const net = await testNetwork();
  const [a, b] = [await net.provisionNode(), await net.provisionNode()];
  const [streamA, streamB] = [await net.connect(a), await net.connect(b)];
  streamA.send(new Uint8Array([0x01, 0x00, 0x10, 0x04]));
  await streamA.wantClosed(1007, /datagram 0 claims 16 bytes but 1 remain/);

  streamB.send(new Uint8Array((1 << 20) + 1));
  await streamB.wantClosed(1009, /frame too big/);

  const c = await net.provisionNode();
  const streamC = await net.connect(c);
  net.uplink.socket.send(new Uint8Array([0x7f]));
  await net.uplink.socket.wantClosed(1007, /unknown frame type 0x7f/);
  assert.equal(streamC.isOpen, true, "a node stream closed with the uplink's bad frame");
  const datagram = wireguardMessage(4);
  // The node stream survives the uplink's end, and carries on once a new uplink is up.
  const uplink = await new TestUplink(relay.url, net.network.name, net.network.adminSecret).hello();
  streamC.send(nodeFrame([datagram]));
  assert.deepEqual(readPeerFrame(await uplink.nextDatagrams()), [[c.tag, datagram]]);
  uplink.socket.close();
});

test("an evicted Durable Object rebuilds its switch from hibernated sockets", async () => {
  const net = await testNetwork();
  const [a, b] = [await net.provisionNode(), await net.provisionNode()];
  const streamA = await net.connect(a);
  await net.connect(b);
  await relay.evictNetwork(net.network.name);

  const up = wireguardMessage(4, 300);
  streamA.send(nodeFrame([up]));
  assert.deepEqual(readPeerFrame(await net.uplink.nextDatagrams()), [[a.tag, up]]);
  const down = wireguardMessage(4, 500);
  net.uplink.socket.send(peerFrame([[a.tag, down]]));
  assert.deepEqual(readNodeFrame(await streamA.nextBinary()), [down]);

  // The restored uplink takes a new peer and its ACK completes the Provision.
  await relay.evictNetwork(net.network.name);
  const c = await net.provisionNode();
  assert.equal(net.uplink.events.at(-1)?.type, 0x11, "PEER_ADDED after eviction");
  assert.deepEqual(net.uplink.events.at(-1)?.virtualAddress, c.tag);

  // The registry knows the old stream after the eviction: a new one still replaces it.
  await relay.evictNetwork(net.network.name);
  const again = await net.connect(a);
  await streamA.wantClosed(4409, "peer replaced");
  // A ping is answered by the runtime while the object is evicted.
  await relay.evictNetwork(net.network.name);
  again.send("ping");
  assert.equal(await again.nextText(), "pong");
});

test("a node's traffic is stored when its stream ends", async () => {
  const net = await testNetwork();
  const node = await net.provisionNode();
  const stream = await net.connect(node);
  const up = [wireguardMessage(1), wireguardMessage(4, 100), wireguardMessage(4, 200)];
  stream.send(nodeFrame(up));
  await net.uplink.nextDatagrams();
  const down = [wireguardMessage(2), wireguardMessage(4, 300)];
  net.uplink.socket.send(peerFrame(down.map((d) => [node.tag, d])));
  await stream.nextBinary();
  stream.ws.close(1000, "done");

  const { name, adminSecret } = net.network;
  const want = { txPackets: 3, txBytes: 148 + 100 + 200, rxPackets: 2, rxBytes: 92 + 300 };
  let seen: unknown;
  for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
    const { json } = await adminCall(relay.url, adminSecret, "GET", `/v1/networks/${name}/nodes`);
    const [entry] = json.nodes as Record<string, unknown>[];
    seen = entry;
    if (entry.txPackets === want.txPackets && entry.rxPackets === want.rxPackets) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.partialDeepStrictEqual(seen, { ...want, connected: false, nodeUuid: node.nodeUuid });
});

test("the uplink needs the admin secret, and a newer uplink replaces the older one", async () => {
  const net = await testNetwork();
  const node = await net.provisionNode();
  const wrong = new TestUplink(relay.url, net.network.name, "not-the-secret");
  await wrong.socket.wantClosed(4401, /invalid admin secret/);

  const newer = await new TestUplink(relay.url, net.network.name, net.network.adminSecret).hello();
  await net.uplink.socket.wantClosed(4409, /uplink replaced/);
  assert.deepEqual(
    newer.peerList?.peers.map((peer) => peer.virtualAddress),
    [node.tag],
  );
  const stream = await net.connect(node);
  const datagram = wireguardMessage(3);
  stream.send(nodeFrame([datagram]));
  assert.deepEqual(readPeerFrame(await newer.nextDatagrams()), [[node.tag, datagram]]);
  newer.socket.close();
});
