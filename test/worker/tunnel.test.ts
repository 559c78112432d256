/**
 * What only the Worker does with node streams, in real workerd: a Durable Object evicted while
 * its WebSockets hibernate, and a node's traffic stored when its stream ends. (Switching,
 * refusals, replacement, isolation and frame errors: the relay contract, test/contract/.)
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { adminCall } from "./support/clients.ts";
import {
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

  // The registry knows the old stream after the eviction: a new one is a candidate across an
  // eviction too, and replaces it once the server answers its handshake.
  await relay.evictNetwork(net.network.name);
  const again = await net.connect(a);
  const initiation = wireguardMessage(1);
  again.send(nodeFrame([initiation]));
  assert.deepEqual(readPeerFrame(await net.uplink.nextDatagrams()), [[a.tag, initiation]]);
  await relay.evictNetwork(net.network.name);
  const response = wireguardMessage(2);
  response.set(initiation.subarray(4, 8), 8);
  net.uplink.socket.send(peerFrame([[a.tag, response]]));
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
