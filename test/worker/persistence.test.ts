/**
 * State across a restart of the Worker's runtime: workerd stops, starts again on the same
 * storage directory, and every Durable Object is constructed anew from SQLite.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  adminCall,
  openNodeStream,
  provisionClient,
  provisionWithAck,
  randomKey,
  TestUplink,
} from "./support/clients.ts";
import {
  ipv6Bytes,
  nodeFrame,
  peerFrame,
  readNodeFrame,
  readPeerFrame,
  wireguardMessage,
} from "./support/frames.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";
import { startTestNetwork } from "./support/network.ts";

const relays: WorkerRelay[] = [];

after(async () => {
  for (const relay of relays) await relay.stop().catch(() => {});
  if (relays[0]) await removePersistDirectory(relays[0]);
});

test("networks, tokens and peers survive a restart; a node reconnects without provisioning", async () => {
  const first = await startWorkerRelay();
  relays.push(first);
  const net = await startTestNetwork(first.url, first.operatorToken);
  const node = await net.provisionNode();
  const stream = await net.connect(node);
  stream.send(nodeFrame([wireguardMessage(4)]));
  await net.uplink.nextDatagrams();
  const { json: tokensBefore } = await adminCall(
    first.url,
    first.operatorToken,
    "GET",
    `/v1/networks/${net.network.name}/tokens`,
  );
  net.close();
  await first.stop();

  const second = await startWorkerRelay({
    persistDirectory: first.persistDirectory,
    operatorToken: first.operatorToken,
  });
  relays.push(second);
  const { name, adminSecret, uplinkSecret, joinToken } = net.network;

  const listed = await adminCall(second.url, second.operatorToken, "GET", "/v1/networks");
  assert.ok((listed.json.networks as string[]).includes(name), JSON.stringify(listed.json));
  const tokensAfter = await adminCall(
    second.url,
    adminSecret,
    "GET",
    `/v1/networks/${name}/tokens`,
  );
  assert.equal(tokensAfter.status, 200, "the admin secret still opens the network");
  assert.deepEqual(tokensAfter.json, tokensBefore);

  // The uplink's peer list comes from storage: the node is in it.
  const uplink = await new TestUplink(second.url, name, uplinkSecret, net.uplink.serverKey).hello();
  assert.deepEqual(
    uplink.peerList!.peers.map((peer) => peer.virtualAddress),
    [node.tag],
  );
  const again = openNodeStream(second.url, name, node.peerAddrPort);
  await again.opened;
  const up = wireguardMessage(1);
  again.send(nodeFrame([up]));
  assert.deepEqual(readPeerFrame(await uplink.nextDatagrams()), [[node.tag, up]]);
  const down = wireguardMessage(2);
  uplink.socket.send(peerFrame([[node.tag, down]]));
  assert.deepEqual(readNodeFrame(await again.nextBinary()), [down]);

  // The join token still provisions, and the same node keeps its virtual address.
  const client = provisionClient(second.url, "grpc-web");
  const { response } = await provisionWithAck(client, uplink, {
    nodeUuid: node.nodeUuid,
    nodePublicKey: randomKey(),
    joinToken,
  });
  assert.deepEqual(ipv6Bytes(response.grpcPeerAddrPort), node.tag);
  assert.equal(response.serverPublicKey, uplink.serverKeyText);
  again.close();
  uplink.socket.close();
});
