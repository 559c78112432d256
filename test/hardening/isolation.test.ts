/**
 * Isolation on the Node relay: a node cannot send as another node (its datagrams always carry
 * its own tag; a frame with a tag of its choosing is refused) nor reach another node; a node
 * stream for a guessed address is refused; an uplink speaks only for its own network (another
 * network's secret is refused, tags of another network's nodes are dropped as unknown_peer).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { NetworkSecrets, NetworkSummary } from "../../relay/app/networks.ts";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { formatIPv6, parseAddrPort } from "../../shared/siderolink/ipv6.ts";
import { createBatchEncoder } from "../../shared/tunnel/encode.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
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
} from "../relay/helpers.ts";
import { eventually } from "../support/eventually.ts";

interface Node {
  readonly addrPort: string;
  readonly tag: Uint8Array;
  readonly stream: NodeStream;
}

/** Waits long enough for a datagram that would arrive to have arrived (a negative check). */
const QUIET_MS = 300;

describe("isolation between nodes and between networks", () => {
  const dir = tempDir();
  let server: RelayServer;
  let red: NetworkSummary & NetworkSecrets;
  let blue: NetworkSummary & NetworkSecrets;
  let redUplink: Uplink;
  let blueUplink: Uplink;
  const sockets: { close(): void }[] = [];

  async function node(network: NetworkSummary): Promise<Node> {
    const client = createClient(ProvisionService, createConnectTransport({ baseUrl: server.url }));
    const reply = await client.provision({
      nodeUuid: crypto.randomUUID(),
      nodePublicKey: base64(randomKey()),
      joinToken: network.joinToken!,
    });
    const stream = new NodeStream(server, network.name, reply.grpcPeerAddrPort);
    sockets.push(stream);
    await stream.opened;
    return {
      addrPort: reply.grpcPeerAddrPort,
      tag: parseAddrPort(reply.grpcPeerAddrPort).address,
      stream,
    };
  }

  before(async () => {
    server = await startRelay(dir.path);
    red = await createNetwork(server, "red");
    blue = await createNetwork(server, "blue");
    redUplink = new Uplink(server, "red", red.adminSecret);
    blueUplink = new Uplink(server, "blue", blue.adminSecret);
    sockets.push(redUplink, blueUplink);
    await Promise.all([redUplink.ready(), blueUplink.ready()]);
  });

  after(async () => {
    for (const socket of sockets) socket.close();
    await server.close();
    dir.remove();
  });

  test("a node's datagrams reach only its uplink, tagged with its own address", async () => {
    const a = await node(red);
    const b = await node(red);
    a.stream.sendDatagrams([transportMessage(101), transportMessage(102)]);
    await eventually(
      "two datagrams at the uplink",
      () => redUplink.received.length >= 2 || undefined,
    );
    for (const { tag, datagram } of redUplink.received) {
      assert.equal(formatIPv6(tag), formatIPv6(a.tag), "tag is the sender's own address");
      assert.ok([101, 102].includes(markerOf(datagram)));
    }
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    assert.deepEqual(b.stream.datagrams(), [], "another node received nothing");
    assert.equal(blueUplink.received.length, 0, "another network's uplink received nothing");
  });

  test("a node that sends a tagged frame (posing as another node) is closed, nothing forwarded", async () => {
    const a = await node(red);
    const b = await node(red);
    const before = redUplink.received.length;
    const forged = createBatchEncoder(true);
    forged.add(transportMessage(201), b.tag);
    a.stream.send(forged.finish().slice());
    const closed = await a.stream.waitClosed();
    assert.equal(closed.code, CloseCode.Malformed);
    assert.match(closed.reason, /unexpected frame type 0x02/);
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    assert.equal(redUplink.received.length, before, "nothing reached the uplink");
    assert.deepEqual(b.stream.datagrams(), []);
  });

  test("a stream for an address not provisioned in this network is refused", async () => {
    const a = await node(red);
    const guess = a.tag.slice();
    guess[15] ^= 1;
    for (const addrPort of [`[${formatIPv6(guess)}]:50888`, a.addrPort]) {
      // A guessed neighbour address, and a red node's real address on the blue network.
      const network = addrPort === a.addrPort ? "blue" : "red";
      const stream = new NodeStream(server, network, addrPort);
      sockets.push(stream);
      const closed = await stream.waitClosed();
      assert.deepEqual(closed, { code: CloseCode.PeerNotAllowed, reason: "peer not allowed" });
    }
    assert.equal(a.stream.closed, undefined, "the real stream is untouched");
  });

  test("an uplink cannot reach another network's nodes: their tags drop as unknown_peer", async () => {
    const redNode = await node(red);
    const blueHub = (await server.directory.runtime("blue")).hub;
    const before = blueHub.metrics.drops.unknown_peer;
    blueUplink.sendDatagrams([{ tag: redNode.tag, datagram: transportMessage(301) }]);
    await eventually(
      "an unknown_peer drop",
      () => blueHub.metrics.drops.unknown_peer === before + 1 || undefined,
    );
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    assert.deepEqual(redNode.stream.datagrams(), [], "the red node received nothing from blue");
  });

  test("another network's admin secret opens neither its uplink nor its admin API", async () => {
    const intruder = new Uplink(server, "red", blue.adminSecret);
    sockets.push(intruder);
    assert.equal((await intruder.waitClosed()).code, CloseCode.Unauthorized);
    const response = await fetch(`${server.url}/v1/networks/red/nodes`, {
      headers: { authorization: `Bearer ${blue.adminSecret}` },
    });
    assert.equal(response.status, 401);
    assert.equal(redUplink.closed, undefined, "red's own uplink is untouched");
  });
});
