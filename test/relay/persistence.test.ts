/** State survives a relay restart on the same data dir: sidecars resume without provisioning. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { formatIPv6, parseAddrPort } from "../../shared/net/ip.ts";
import { FrameType } from "../../shared/tunnel/frame.ts";
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

const dir = tempDir();
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  dir.remove();
});

test("after a restart the uplink gets its peers back and the node's stream is accepted as before", async () => {
  const first = await startRelay(dir.path);
  cleanups.push(() => first.close());
  const network = await createNetwork(first, "keep");
  const uplink = new Uplink(first, "keep", network.uplinkSecret);
  cleanups.push(() => uplink.close());
  await uplink.ready();
  const nodeKey = randomKey();
  const reply = await createClient(
    ProvisionService,
    createGrpcWebTransport({ baseUrl: first.url }),
  ).provision({
    nodeUuid: "00000000-0000-4000-8000-00000000fe75",
    nodePublicKey: base64(nodeKey),
    joinToken: network.joinToken!,
  });
  const stream = new NodeStream(first, "keep", reply.grpcPeerAddrPort);
  cleanups.push(() => stream.close());
  await stream.opened;
  stream.sendDatagrams([transportMessage(1)]);
  await eventually("the datagram at the uplink", () => uplink.received.length === 1 || undefined);
  await first.close();
  assert.equal((await stream.waitClosed()).code, 1001, "streams are told the relay is going away");

  const second = await startRelay(dir.path);
  cleanups.push(() => second.close());
  const shown = await (await second.directory.runtime("keep")).store.network();
  assert.equal(shown?.serverPublicKey, base64(uplink.serverKey), "the server key was kept");

  const uplinkAgain = new Uplink(second, "keep", network.uplinkSecret, uplink.serverKey);
  cleanups.push(() => uplinkAgain.close());
  const list = await uplinkAgain.ready();
  assert.equal(list.type, FrameType.PeerList);
  assert.equal(list.peers.length, 1);
  assert.deepEqual(list.peers[0].publicKey, nodeKey);
  const tag = parseAddrPort(reply.grpcPeerAddrPort).address;
  assert.deepEqual(list.peers[0].virtualAddress, tag);
  assert.equal(`${formatIPv6(list.peers[0].address)}/64`, reply.nodeAddressPrefix);

  const resumed = new NodeStream(second, "keep", reply.grpcPeerAddrPort);
  cleanups.push(() => resumed.close());
  await resumed.opened;
  const runtime = await second.directory.runtime("keep");
  await eventually("the resumed stream in the hub", () => runtime.hub.nodeCount === 1 || undefined);
  resumed.sendDatagrams([transportMessage(2)]);
  uplinkAgain.sendDatagrams([{ tag, datagram: transportMessage(3) }]);
  await eventually(
    "datagrams both ways",
    () => (uplinkAgain.received.length === 1 && resumed.datagrams().length === 1) || undefined,
  );
  assert.equal(markerOf(uplinkAgain.received[0].datagram), 2);
  assert.equal(markerOf(resumed.datagrams()[0]), 3);
  assert.equal(resumed.closed, undefined);

  // Traffic counters written at shutdown survive too.
  const [peer] = await runtime.store.peers();
  assert.equal(peer.txPackets, 1, "the first relay's count of the node's datagrams");
});
