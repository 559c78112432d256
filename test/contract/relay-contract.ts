/**
 * The relay's contract, written once and run against every runtime and tunnel transport through
 * a RelayFixture: Provision status codes, tunnel refusals and replacement, isolation of nodes and
 * networks, and frame errors. Proofs that something did not arrive send a marker afterwards
 * down the same path and assert, once the marker is in, that nothing came before it.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";
import {
  adminCall,
  type NetworkSummary,
  randomKey,
  type TestUplink,
} from "../worker/support/clients.ts";
import {
  ackFrame,
  helloFrame,
  ipv6Bytes,
  PEER_ADDED,
  PEER_REMOVED,
  peerFrame,
  readPeerEvent,
  readPeerFrame,
  wireguardMessage,
} from "../worker/support/frames.ts";
import type { ProvisionRequest, RelayFixture, TunnelStream } from "./relay-fixture.ts";

/** VirtualNetworkPrefix (Talos): fdae:41e4:649b:9304::/64, port 50888. */
const VIRTUAL_ADDR_PORT = /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:50888$/;

interface ContractNetwork {
  readonly summary: NetworkSummary;
  readonly uplink: TestUplink;
}

interface ContractNode {
  readonly nodeUuid: string;
  readonly peerAddrPort: string;
  /** The virtual address's 16 bytes: the node's tag on the uplink. */
  readonly tag: Uint8Array;
}

type Entry = [tag: Uint8Array, datagram: Uint8Array];

/** A handshake response whose receiver index is the sender index of `initiation`. */
function responseTo(initiation: Uint8Array): Uint8Array {
  const response = wireguardMessage(2);
  response.set(initiation.subarray(4, 8), 8);
  return response;
}

export function describeRelayContract(fixture: RelayFixture): void {
  const closers: { close(): void }[] = [];
  /** Datagrams read from an uplink's frames beyond what a test asked for. */
  const pending = new WeakMap<TestUplink, Entry[]>();

  before(() => fixture.start());
  after(async () => {
    for (const closer of closers) closer.close();
    await fixture.close();
  });

  const protocol = fixture.provisionProtocols[0];

  async function network(): Promise<ContractNetwork> {
    const summary = await fixture.createNetwork();
    return { summary, uplink: await uplinkFor(summary) };
  }

  /** Opens the network's uplink with its uplink secret and says HELLO with `serverKey` (or a fresh key). */
  async function uplinkFor(summary: NetworkSummary, serverKey?: Uint8Array): Promise<TestUplink> {
    return openUplink(summary, summary.uplinkSecret, serverKey).hello();
  }

  function openUplink(summary: NetworkSummary, secret: string, serverKey?: Uint8Array) {
    const uplink = fixture.openUplink(summary.name, secret, serverKey);
    closers.push(uplink.socket);
    return uplink;
  }

  /** A call to the operator's admin API of a network; `path` is below the network. */
  function operatorCall(net: NetworkSummary, method: string, path: string, token?: string) {
    return fetch(new URL(`/v1/networks/${net.name}/${path}`, fixture.url), {
      method,
      headers: { authorization: `Bearer ${token ?? fixture.operatorToken}` },
    });
  }

  function request(net: NetworkSummary, fields: Partial<ProvisionRequest> = {}): ProvisionRequest {
    return {
      nodeUuid: randomUUID(),
      nodePublicKey: randomKey(),
      joinToken: net.joinToken,
      ...fields,
    };
  }

  /** Provisions while the uplink acknowledges the PEER_ADDED it causes. */
  async function provisionNode(
    net: ContractNetwork,
    fields: Partial<ProvisionRequest> = {},
    via = protocol,
  ): Promise<ContractNode & { publicKey: string }> {
    const sent = request(net.summary, fields);
    const added = async () => {
      for (;;) if ((await net.uplink.nextEvent()).type === PEER_ADDED) return;
    };
    const [reply] = await Promise.all([fixture.provision(via, sent), added()]);
    return {
      nodeUuid: sent.nodeUuid,
      publicKey: sent.nodePublicKey,
      peerAddrPort: reply.grpcPeerAddrPort,
      tag: ipv6Bytes(reply.grpcPeerAddrPort),
    };
  }

  function open(networkName: string, peerAddrPort: string, via?: "header" | "query") {
    const stream = fixture.openTunnel(networkName, peerAddrPort, via);
    closers.push(stream);
    return stream;
  }

  /** The next `count` datagrams at the uplink, with their tags. */
  async function atUplink(uplink: TestUplink, count: number): Promise<Entry[]> {
    const entries = pending.get(uplink) ?? [];
    pending.set(uplink, entries);
    while (entries.length < count) entries.push(...readPeerFrame(await uplink.nextDatagrams()));
    return entries.splice(0, count);
  }

  /**
   * Opens the node's stream and sends one datagram through it: once the uplink has it, the relay
   * has the stream switched in, whatever the transport says about being open.
   */
  async function connect(net: ContractNetwork, node: ContractNode): Promise<TunnelStream> {
    const stream = open(net.summary.name, node.peerAddrPort);
    const hello = wireguardMessage(1);
    stream.sendDatagrams([hello]);
    assert.deepEqual(await atUplink(net.uplink, 1), [[node.tag, hello]], "first datagram");
    return stream;
  }

  /** Sends `marker` from the uplink to `node` and asserts it is the next thing the node gets. */
  async function nothingBefore(
    net: ContractNetwork,
    node: ContractNode,
    stream: TunnelStream,
  ): Promise<void> {
    const marker = wireguardMessage(4, 77);
    net.uplink.socket.send(peerFrame([[node.tag, marker]]));
    assert.deepEqual(
      await stream.receive(1, "the marker"),
      [marker],
      "the node received something before the marker",
    );
  }

  /** A call to the network's admin API with its admin secret; `path` is below the network. */
  function admin(net: NetworkSummary, method: string, path: string, body?: unknown) {
    const url = new URL(`/v1/networks/${net.name}${path ? `/${path}` : ""}`, fixture.url);
    return fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${net.adminSecret}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  /** A drop counter of the network, read from its Prometheus text on the admin API. */
  async function drops(net: NetworkSummary, reason: string): Promise<number> {
    const response = await fetch(new URL(`/v1/networks/${net.name}/metrics`, fixture.url), {
      headers: { authorization: `Bearer ${net.adminSecret}` },
    });
    const text = await response.text();
    const sample = `siderolink_relay_drops_total{network="${net.name}",reason="${reason}"} `;
    const line = text.split("\n").find((l) => l.startsWith(sample));
    assert.ok(line, `no ${sample} in\n${text}`);
    return Number(line.slice(sample.length));
  }

  async function refused(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
    await assert.rejects(call, (error: unknown) => {
      assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
      assert.equal(Code[error.code], Code[code], error.rawMessage);
      assert.match(error.rawMessage, message);
      return true;
    });
  }

  describe(`${fixture.name}: Provision`, () => {
    for (const via of fixture.provisionProtocols) {
      test(`over ${via}: a wrong, foreign or missing join token is PermissionDenied, saying the join token is invalid`, async () => {
        const summary = await fixture.createNetwork();
        const other = await fixture.createNetwork();
        const [name, secret] = summary.joinToken.split(".");
        for (const joinToken of [
          `${name}.${"x".repeat(secret.length)}`,
          `${other.name}.${secret}`,
          `nosuch-network.${secret}`,
          "no-dot",
          undefined,
        ]) {
          await refused(
            fixture.provision(via, request(summary, { joinToken })),
            Code.PermissionDenied,
            /invalid join token/,
          );
        }
      });

      test(`over ${via}: a key that is not 32 bytes of base64 is InvalidArgument naming node_public_key`, async () => {
        const summary = await fixture.createNetwork();
        for (const nodePublicKey of ["", "not base64!", Buffer.alloc(31).toString("base64")]) {
          await refused(
            fixture.provision(via, request(summary, { nodePublicKey })),
            Code.InvalidArgument,
            /node_public_key/,
          );
        }
      });

      test(`over ${via}: without the server's uplink the answer is Unavailable, saying how to connect it`, async () => {
        const summary = await fixture.createNetwork();
        await refused(
          fixture.provision(via, request(summary)),
          Code.Unavailable,
          /management server is not connected.*siderolink-sidecar serve/,
        );
      });

      test(`over ${via}: the reply waits for the uplink's ACK, always tunnels, and carries the network's addresses and the server's key`, async () => {
        const net = await network();
        assert.deepEqual(net.uplink.peerList?.peers, [], "a new network has no peers");
        const sent = request(net.summary, { nodeUniqueToken: "u1", wireguardOverGrpc: true });
        let answered = false;
        const call = fixture.provision(via, sent).finally(() => {
          answered = true;
        });
        const event = readPeerEvent(await net.uplink.socket.nextBinary("PEER_ADDED"));
        assert.equal(event.type, PEER_ADDED);
        // A later call to the same network, answered while the first still waits for its ACK.
        await refused(
          fixture.provision(via, request(net.summary, { joinToken: `${net.summary.name}.x` })),
          Code.PermissionDenied,
          /invalid join token/,
        );
        assert.equal(answered, false, "Provision answered before the uplink acknowledged");
        net.uplink.socket.send(ackFrame(event.seq));
        const reply = await call;

        assert.equal(reply.serverPublicKey, net.uplink.serverKeyText);
        assert.equal(reply.serverAddress, net.summary.serverAddress);
        const [address, length] = reply.nodeAddressPrefix.split("/");
        assert.equal(length, "64");
        assert.deepEqual(
          ipv6Bytes(address).subarray(0, 8),
          ipv6Bytes(net.summary.prefix.split("/")[0]).subarray(0, 8),
          `${reply.nodeAddressPrefix} in ${net.summary.prefix}`,
        );
        assert.match(reply.grpcPeerAddrPort, VIRTUAL_ADDR_PORT);
        assert.deepEqual(reply.serverEndpoint, [reply.grpcPeerAddrPort]);
        assert.equal(Buffer.from(event.publicKey).toString("base64"), sent.nodePublicKey);
        assert.deepEqual(event.address, ipv6Bytes(address));
        assert.deepEqual(event.virtualAddress, ipv6Bytes(reply.grpcPeerAddrPort));
      });

      test(`over ${via}: a node provisioned again with a new key keeps both addresses, and the uplink hears the old key removed`, async () => {
        const net = await network();
        const identity = { nodeUuid: randomUUID(), nodeUniqueToken: "t" };
        const first = await provisionNode(net, identity, via);
        const again = await provisionNode(net, identity, via);
        assert.equal(again.peerAddrPort, first.peerAddrPort);
        const removed = net.uplink.events.filter((e) => e.type === PEER_REMOVED);
        assert.equal(removed.length, 1, "one PEER_REMOVED");
        assert.equal(Buffer.from(removed[0].publicKey).toString("base64"), first.publicKey);
        const added = net.uplink.events.filter((e) => e.type === PEER_ADDED);
        assert.equal(Buffer.from(added[1].publicKey).toString("base64"), again.publicKey);
        assert.deepEqual(added[1].address, added[0].address, "the same node address");
        // Another unique token for the same UUID is refused: the UUID is bound to its token.
        await refused(
          fixture.provision(via, request(net.summary, { ...identity, nodeUniqueToken: "other" })),
          Code.PermissionDenied,
          /bound to another node_unique_token.*node admit/,
        );
      });

      test(`over ${via}: identity fields are capped at 256 bytes and node_uuid must be a UUID, each refusal naming its field`, async () => {
        const net = await network();
        for (const [fields, message] of [
          [
            { nodeUniqueToken: "u".repeat(60_000) },
            /node_unique_token: 60000 bytes, over the limit of 256/,
          ],
          [{ talosVersion: "v".repeat(257) }, /talos_version: 257 bytes, over the limit of 256/],
          [{ nodeUuid: "x".repeat(300) }, /node_uuid: 300 bytes/],
          [{ nodeUuid: "not-a-uuid" }, /node_uuid: "not-a-uuid" is not a UUID/],
          [{ nodeUuid: "\u001b[31m0000-0000" }, /node_uuid: .* is not a UUID/],
        ] as const) {
          await refused(
            fixture.provision(via, request(net.summary, fields)),
            Code.InvalidArgument,
            message,
          );
        }
        assert.equal(net.uplink.events.length, 0, "nothing reached the uplink");
      });
    }

    test("a node UUID bound to a unique token cannot be taken over with an empty token and a new key until an operator admits it; the same token with a new key (a restart) may", async () => {
      const net = await network();
      const nodeUuid = randomUUID();
      const real = await provisionNode(net, { nodeUuid, nodeUniqueToken: "real-token" });
      // The attack: a join-token holder who knows the (DMI) UUID, with no unique token.
      await refused(
        fixture.provision(protocol, request(net.summary, { nodeUuid, nodeUniqueToken: "" })),
        Code.PermissionDenied,
        new RegExp(`node ${nodeUuid} is bound to another node_unique_token`),
      );
      await refused(
        fixture.provision(protocol, request(net.summary, { nodeUuid: nodeUuid.toUpperCase() })),
        Code.PermissionDenied,
        /bound to another node_unique_token/,
      );
      assert.equal(
        net.uplink.events.filter((e) => e.type === PEER_REMOVED).length,
        0,
        "the real node's peer stayed",
      );
      const restarted = await provisionNode(net, { nodeUuid, nodeUniqueToken: "real-token" });
      assert.equal(restarted.peerAddrPort, real.peerAddrPort, "a restart keeps its addresses");
      const admitted = await admin(net.summary, "POST", `nodes/${nodeUuid}/admit`);
      assert.equal(admitted.status, 200, await admitted.text());
      const reinstalled = await provisionNode(net, { nodeUuid, nodeUniqueToken: "new-install" });
      assert.equal(
        reinstalled.peerAddrPort,
        real.peerAddrPort,
        "an admitted node keeps its addresses",
      );
      await refused(
        fixture.provision(protocol, request(net.summary, { nodeUuid, nodeUniqueToken: "" })),
        Code.PermissionDenied,
        /bound to another node_unique_token/,
      );
    });

    test("a network that requires unique tokens refuses a node without one, saying how to turn it off", async () => {
      const net = await network();
      const set = await admin(net.summary, "PATCH", "", { requireUniqueToken: true });
      assert.equal(set.status, 200, await set.text());
      await refused(
        fixture.provision(protocol, request(net.summary)),
        Code.PermissionDenied,
        /requires node_unique_token.*require-unique-token/,
      );
      await provisionNode(net, { nodeUniqueToken: "t" });
    });

    test("a join token with a node quota provisions that many distinct nodes, then ResourceExhausted; known nodes may provision again", async () => {
      const net = await network();
      const created = await admin(net.summary, "POST", "tokens", { maxNodes: 2 });
      assert.equal(created.status, 201);
      const { joinToken } = (await created.json()) as { joinToken: string };
      const first = await provisionNode(net, { joinToken, nodeUniqueToken: "a" });
      await provisionNode(net, { joinToken, nodeUniqueToken: "b" });
      await refused(
        fixture.provision(protocol, request(net.summary, { joinToken })),
        Code.ResourceExhausted,
        /has provisioned 2 nodes, its limit/,
      );
      await provisionNode(net, { joinToken, nodeUuid: first.nodeUuid, nodeUniqueToken: "a" });
      // The network's own token is another quota.
      await provisionNode(net);
    });

    test("an empty node_uuid is accepted, as siderolink's own server accepts it", async () => {
      const net = await network();
      const node = await provisionNode(net, { nodeUuid: "", nodeUniqueToken: "empty-uuid" });
      assert.match(node.peerAddrPort, VIRTUAL_ADDR_PORT);
    });

    test("a Talos older than v1.7 is FailedPrecondition naming the minimum version; v1.7 and newer are served", async () => {
      const net = await network();
      for (const talosVersion of ["v1.6.7", "v1.3.0", "v0.14.1"]) {
        await refused(
          fixture.provision(protocol, request(net.summary, { talosVersion })),
          Code.FailedPrecondition,
          new RegExp(
            `Talos ${talosVersion.replaceAll(".", "\\.")} cannot tunnel.*Talos v1\\.7\\.0 or newer`,
          ),
        );
      }
      for (const talosVersion of ["v1.7.0", "v1.11.2", ""]) {
        const node = await provisionNode(net, { talosVersion });
        assert.match(node.peerAddrPort, VIRTUAL_ADDR_PORT, talosVersion);
      }
    });

    test("a revoked node stays out: its identity is PermissionDenied until an operator admits it", async () => {
      const net = await network();
      const identity = { nodeUuid: randomUUID(), nodeUniqueToken: "revoked-one" };
      const node = await provisionNode(net, identity);
      const path = `/v1/networks/${net.summary.name}/nodes`;
      const secret = net.summary.adminSecret;
      const revoked = await adminCall(fixture.url, secret, "DELETE", `${path}/${node.nodeUuid}`);
      assert.equal(revoked.status, 200, JSON.stringify(revoked.json));
      for (let attempt = 0; attempt < 3; attempt++) {
        await refused(
          fixture.provision(protocol, request(net.summary, identity)),
          Code.PermissionDenied,
          new RegExp(
            `revoked by the operator.*node admit ${net.summary.name} ${identity.nodeUuid}`,
          ),
        );
      }
      // Another machine with the same UUID (another unique token) is not the revoked one.
      await provisionNode(net, { ...identity, nodeUniqueToken: "another-machine" });
      const admitted = await adminCall(
        fixture.url,
        secret,
        "POST",
        `${path}/${node.nodeUuid}/admit`,
      );
      assert.equal(admitted.status, 200, JSON.stringify(admitted.json));
      assert.equal(
        (admitted.json as { admitted: { revocationsLifted: number } }).admitted.revocationsLifted,
        1,
      );
      const again = await provisionNode(net, identity);
      assert.match(again.peerAddrPort, VIRTUAL_ADDR_PORT);
      const stranger = await adminCall(
        fixture.url,
        secret,
        "POST",
        `${path}/${randomUUID()}/admit`,
      );
      assert.equal(stranger.status, 404, "a UUID neither revoked nor known has nothing to admit");
    });

    const cap = fixture.maxPeersPerNetwork;
    if (cap !== undefined) {
      test(`a network holding its ${cap} nodes answers a new one ResourceExhausted naming the limit; a known node may provision again`, async () => {
        const net = await network();
        const nodes = [];
        for (let i = 0; i < cap; i++) nodes.push(await provisionNode(net));
        await refused(
          fixture.provision(protocol, request(net.summary)),
          Code.ResourceExhausted,
          new RegExp(`holds ${cap} nodes, its limit; revoke unused nodes`),
        );
        const again = await provisionNode(net, { nodeUuid: nodes[0].nodeUuid });
        assert.equal(again.peerAddrPort, nodes[0].peerAddrPort);
      });
    }
  });

  describe(`${fixture.name}: tunnel streams`, () => {
    test("a stream for an address that is no provisioned peer ends with 'peer not allowed'", async () => {
      const net = await network();
      for (const address of ["[fdae:41e4:649b:9304::1234]:50888", "not an address", ""]) {
        assert.deepEqual(await open(net.summary.name, address).ended(), {
          code: fixture.endingCode(CloseCode.PeerNotAllowed),
          reason: "peer not allowed",
        });
      }
    });

    test("a stream for another network's node never joins this network", async () => {
      const [here, there] = [await network(), await network()];
      const stranger = await provisionNode(there);
      const stream = open(here.summary.name, stranger.peerAddrPort);
      if (fixture.tunnelNamesNetwork) {
        assert.deepEqual(await stream.ended(), {
          code: fixture.endingCode(CloseCode.PeerNotAllowed),
          reason: "peer not allowed",
        });
        return;
      }
      // The route names no network: the address finds the node's own, and only its uplink hears.
      const datagram = wireguardMessage(4);
      stream.sendDatagrams([datagram]);
      assert.deepEqual(await atUplink(there.uplink, 1), [[stranger.tag, datagram]]);
      const local = await provisionNode(here);
      const marker = wireguardMessage(4, 33);
      (await connect(here, local)).sendDatagrams([marker]);
      assert.deepEqual(await atUplink(here.uplink, 1), [[local.tag, marker]]);
    });

    if (fixture.addressInQuery) {
      test("the address in the query string instead of the header is refused, saying to send the header", async () => {
        const net = await network();
        const node = await provisionNode(net);
        assert.deepEqual(await open(net.summary.name, node.peerAddrPort, "query").ended(), {
          code: fixture.endingCode(CloseCode.PeerNotAllowed),
          reason: "peer not allowed: send x-siderolink-ipv6-addr as a header, not in the URL",
        });
      });
    }

    test("datagrams flow node to uplink tagged with the sender, and back to the node that owns the tag, in order, one batch per node", async () => {
      const net = await network();
      const [a, b] = [await provisionNode(net), await provisionNode(net)];
      const [streamA, streamB] = [await connect(net, a), await connect(net, b)];
      const fromA = [wireguardMessage(1), wireguardMessage(4, 200), wireguardMessage(4, 1280)];
      streamA.sendDatagrams(fromA);
      assert.deepEqual(
        await atUplink(net.uplink, 3),
        fromA.map((datagram) => [a.tag, datagram]),
      );
      const toA = [wireguardMessage(2), wireguardMessage(4, 64)];
      const toB = [wireguardMessage(4, 1000), wireguardMessage(3)];
      net.uplink.socket.send(
        peerFrame([
          [a.tag, toA[0]],
          [b.tag, toB[0]],
          [a.tag, toA[1]],
          [b.tag, toB[1]],
        ]),
      );
      assert.deepEqual(await streamA.receive(2, "A's two datagrams"), toA);
      assert.deepEqual(await streamB.receive(2, "B's two datagrams"), toB);
      // One uplink message for two nodes is split into one message per node where messages batch.
      const perNode = fixture.batches ? 1 : 2;
      assert.equal(streamA.messagesReceived, perNode, "messages that carried A's datagrams");
      assert.equal(streamB.messagesReceived, perNode, "messages that carried B's datagrams");
    });

    test("datagrams that are not WireGuard messages are dropped and counted; the stream stays", async () => {
      const net = await network();
      const node = await provisionNode(net);
      const stream = await connect(net, node);
      const good = wireguardMessage(4, 48);
      const notWireGuard = new Uint8Array([9, 0, 0, 0, ...new Uint8Array(40)]);
      const wrongLength = wireguardMessage(1).subarray(0, 100);
      stream.sendDatagrams([notWireGuard, wrongLength, good]);
      assert.deepEqual(await atUplink(net.uplink, 1), [[node.tag, good]]);
      assert.equal(await drops(net.summary, "not_wireguard"), 2);
      assert.equal(stream.isOpen, true);
    });

    test("a second stream for the same address takes it over once the server answers its handshake: the first ends with 'peer replaced'", async () => {
      const net = await network();
      const node = await provisionNode(net);
      const first = await connect(net, node);
      const second = open(net.summary.name, node.peerAddrPort);
      const initiation = wireguardMessage(1);
      second.sendDatagrams([initiation]);
      assert.deepEqual(await atUplink(net.uplink, 1), [[node.tag, initiation]]);
      assert.equal(first.isOpen, true, "the first stream is live until the second proves itself");
      net.uplink.socket.send(peerFrame([[node.tag, responseTo(initiation)]]));
      assert.deepEqual(await first.ended(), {
        code: fixture.endingCode(CloseCode.Replaced),
        reason: "peer replaced",
      });
      assert.equal((await second.receive(1, "the handshake response"))[0][0], 2);
      const datagram = wireguardMessage(4);
      net.uplink.socket.send(peerFrame([[node.tag, datagram]]));
      assert.deepEqual(await second.receive(1, "the datagram on the second stream"), [datagram]);
    });

    test("an attacker who knows a node's address cannot take its tunnel: the node keeps its stream and its data, the attacker gets none and injects nothing", async () => {
      const net = await network();
      const node = await provisionNode(net);
      const real = await connect(net, node);
      const attacker = open(net.summary.name, node.peerAddrPort);
      // Injected transport data and a forged response go nowhere; an initiation (which the
      // server will not answer: the attacker lacks the node's key) is all that passes.
      const initiation = wireguardMessage(1);
      attacker.sendDatagrams([wireguardMessage(4, 120), wireguardMessage(2), initiation]);
      assert.deepEqual(await atUplink(net.uplink, 1), [[node.tag, initiation]]);
      const forServer = wireguardMessage(4, 130);
      real.sendDatagrams([forServer]);
      assert.deepEqual(
        await atUplink(net.uplink, 1),
        [[node.tag, forServer]],
        "the uplink got nothing from the attacker but its initiation",
      );
      // The server's data for the node reaches the node; the attacker sees none of it: the
      // cookie reply to its own initiation (which does not promote it) is the first it gets.
      const toNode = wireguardMessage(4, 140);
      const cookie = wireguardMessage(3);
      cookie.set(initiation.subarray(4, 8), 4);
      net.uplink.socket.send(peerFrame([[node.tag, toNode]]));
      net.uplink.socket.send(peerFrame([[node.tag, cookie]]));
      assert.deepEqual(await real.receive(1, "the server's datagram"), [toNode]);
      assert.deepEqual(await attacker.receive(1, "the cookie reply"), [cookie]);
      assert.equal(real.isOpen, true, "the real node's stream is still open");
      await nothingBefore(net, node, real);
    });
  });

  describe(`${fixture.name}: the uplink`, () => {
    test("an uplink needs its own network's uplink secret; the admin secret and another network's secrets open neither its uplink nor its admin API", async () => {
      const net = await network();
      const other = await fixture.createNetwork();
      for (const secret of [
        "",
        "not-the-secret",
        other.uplinkSecret,
        other.adminSecret,
        net.summary.adminSecret,
      ]) {
        const impostor = openUplink(net.summary, secret);
        await impostor.socket.wantClosed(CloseCode.Unauthorized, /uplink secret/);
      }
      const response = await fetch(new URL(`/v1/networks/${net.summary.name}/nodes`, fixture.url), {
        headers: { authorization: `Bearer ${other.adminSecret}` },
      });
      await response.body?.cancel();
      assert.equal(response.status, 401);
      assert.equal(net.uplink.socket.isOpen, true, "the network's own uplink is untouched");
    });

    test("a newer uplink with the pinned server key replaces the older one once its HELLO is accepted, gets the peer list and the nodes' datagrams", async () => {
      const net = await network();
      const node = await provisionNode(net);
      const newer = openUplink(net.summary, net.summary.uplinkSecret, net.uplink.serverKey);
      await newer.socket.opened;
      // Connected but silent: the live uplink keeps the network until the newcomer's HELLO.
      const stream = await connect(net, node);
      assert.equal(net.uplink.socket.isOpen, true, "replaced before HELLO");
      await newer.hello();
      await net.uplink.socket.wantClosed(CloseCode.Replaced, /uplink replaced/);
      assert.deepEqual(
        newer.peerList?.peers.map((peer) => peer.virtualAddress),
        [node.tag],
      );
      const datagram = wireguardMessage(3);
      stream.sendDatagrams([datagram]);
      assert.deepEqual(await atUplink(newer, 1), [[node.tag, datagram]]);
    });

    test("a second uplink presenting another server key cannot take over: it is refused, the live uplink stays, and Provision still hands out the pinned key", async () => {
      const net = await network();
      const first = await provisionNode(net);
      const impostor = openUplink(net.summary, net.summary.uplinkSecret);
      await impostor.socket.opened;
      impostor.socket.send(helloFrame(impostor.serverKey));
      await impostor.socket.wantClosed(
        CloseCode.ServerKeyMismatch,
        new RegExp(`siderolink-relay network reset-server-key ${net.summary.name}`),
      );
      assert.equal(net.uplink.socket.isOpen, true, "the live uplink was closed");
      const sent = request(net.summary);
      const added = async () => {
        for (;;) if ((await net.uplink.nextEvent()).type === PEER_ADDED) return;
      };
      const [reply] = await Promise.all([fixture.provision(protocol, sent), added()]);
      assert.equal(reply.serverPublicKey, net.uplink.serverKeyText, "the pinned key");
      // The live uplink still carries the nodes' datagrams.
      await connect(net, first);
    });

    test("the operator resets the pinned server key: the live uplink closes and the next uplink's key is pinned; an admin secret cannot reset it", async () => {
      const net = await network();
      const byAdmin = await operatorCall(
        net.summary,
        "DELETE",
        "server-key",
        net.summary.adminSecret,
      );
      await byAdmin.body?.cancel();
      assert.equal(byAdmin.status, 401, "the admin secret reset the pin");
      assert.equal(net.uplink.socket.isOpen, true);

      const reset = await operatorCall(net.summary, "DELETE", "server-key");
      assert.equal(reset.status, 200, await reset.text());
      await net.uplink.socket.wantClosed(CloseCode.ServerKeyMismatch, /reset by the operator/);
      const replacement = await uplinkFor(net.summary);
      const replaced: ContractNetwork = { summary: net.summary, uplink: replacement };
      const sent = request(net.summary);
      const added = async () => {
        for (;;) if ((await replacement.nextEvent()).type === PEER_ADDED) return;
      };
      const [reply] = await Promise.all([fixture.provision(protocol, sent), added()]);
      assert.equal(reply.serverPublicKey, replacement.serverKeyText, "the new key");
      assert.notEqual(reply.serverPublicKey, net.uplink.serverKeyText);
      await provisionNode(replaced);
    });

    test("the operator mints a new uplink secret: the old one opens the uplink no more", async () => {
      const net = await network();
      const minted = await operatorCall(net.summary, "POST", "uplink-secret");
      assert.equal(minted.status, 201);
      const { uplinkSecret } = (await minted.json()) as { uplinkSecret: string };
      assert.match(uplinkSecret, /^[A-Za-z0-9_-]{43}$/);
      const old = openUplink(net.summary, net.summary.uplinkSecret, net.uplink.serverKey);
      await old.socket.wantClosed(CloseCode.Unauthorized, /uplink secret/);
      const rotated = { ...net.summary, uplinkSecret };
      await uplinkFor(rotated, net.uplink.serverKey);
      await net.uplink.socket.wantClosed(CloseCode.Replaced, /uplink replaced/);
    });
  });

  describe(`${fixture.name}: isolation`, () => {
    test("a node's datagrams reach only its own network's uplink, tagged with its own address", async () => {
      const [red, blue] = [await network(), await network()];
      const [a, b] = [await provisionNode(red), await provisionNode(red)];
      const blueNode = await provisionNode(blue);
      const [streamA, streamB] = [await connect(red, a), await connect(red, b)];
      const blueStream = await connect(blue, blueNode);
      const sent = [wireguardMessage(4, 101), wireguardMessage(4, 102)];
      streamA.sendDatagrams(sent);
      assert.deepEqual(
        await atUplink(red.uplink, 2),
        sent.map((datagram) => [a.tag, datagram]),
      );
      await nothingBefore(red, b, streamB);
      const marker = wireguardMessage(4, 55);
      blueStream.sendDatagrams([marker]);
      assert.deepEqual(
        await atUplink(blue.uplink, 1),
        [[blueNode.tag, marker]],
        "blue's uplink got the marker and nothing before it",
      );
    });

    test("a node cannot address another node: a frame naming one reaches neither it nor the uplink", async () => {
      const net = await network();
      const [a, b] = [await provisionNode(net), await provisionNode(net)];
      const [streamA, streamB] = [await connect(net, a), await connect(net, b)];
      const forged = peerFrame([[b.tag, wireguardMessage(4, 201)]]);
      const expected = fixture.taggedFrameEnding;
      // On a transport without frames of its own (gRPC) the forged frame can only be a datagram.
      if (expected) streamA.sendRaw(forged);
      else streamA.sendDatagrams([forged]);
      if (expected) {
        const ending = await streamA.ended();
        assert.equal(ending.code, expected.code, ending.reason);
        assert.match(ending.reason, expected.reason);
      } else {
        await eventually(
          "the frame dropped as not WireGuard",
          async () => (await drops(net.summary, "not_wireguard")) === 1,
        );
      }
      await nothingBefore(net, b, streamB);
      const marker = wireguardMessage(4, 66);
      streamB.sendDatagrams([marker]);
      assert.deepEqual(
        await atUplink(net.uplink, 1),
        [[b.tag, marker]],
        "the uplink got nothing from A before B's marker",
      );
    });

    test("an uplink cannot reach another network's nodes, nor unknown tags: both drop as unknown_peer", async () => {
      const [red, blue] = [await network(), await network()];
      const redNode = await provisionNode(red);
      const blueNode = await provisionNode(blue);
      const redStream = await connect(red, redNode);
      const blueStream = await connect(blue, blueNode);
      blue.uplink.socket.send(
        peerFrame([
          [redNode.tag, wireguardMessage(4, 301)],
          [ipv6Bytes("fdae:41e4:649b:9304::dead"), wireguardMessage(4, 302)],
        ]),
      );
      await nothingBefore(blue, blueNode, blueStream);
      assert.equal(await drops(blue.summary, "unknown_peer"), 2);
      await nothingBefore(red, redNode, redStream);
    });
  });

  describe(`${fixture.name}: frame errors`, () => {
    for (const malformed of fixture.malformed) {
      test(`${malformed.name} closes only the stream that sent it; the relay keeps serving`, async () => {
        const net = await network();
        const [offender, bystander] = [await provisionNode(net), await provisionNode(net)];
        const offenderStream = await connect(net, offender);
        const bystanderStream = await connect(net, bystander);
        offenderStream.sendRaw(malformed.message);
        const ending = await offenderStream.ended();
        assert.equal(ending.code, malformed.code, `close reason: ${ending.reason}`);
        assert.match(ending.reason, malformed.reason);
        assert.equal(bystanderStream.isOpen, true, "the other node's stream stayed open");
        assert.equal(net.uplink.socket.isOpen, true, "the uplink stayed open");
        await nothingBefore(net, bystander, bystanderStream);
        // The offender may come back on a new stream.
        await connect(net, offender);
      });
    }

    for (const [name, message, code, reason] of [
      ["an unknown frame type", new Uint8Array([0x7f, 1, 2, 3]), 1007, /unknown frame type 0x7f/],
      ["a message over the frame limit", new Uint8Array((1 << 20) + 1), 1009, /^$|frame too big/],
    ] as const) {
      test(`an uplink message with ${name} closes the uplink only; node streams carry on with a new uplink`, async () => {
        const net = await network();
        const node = await provisionNode(net);
        const stream = await connect(net, node);
        net.uplink.socket.send(message);
        await net.uplink.socket.wantClosed(code, reason);
        assert.equal(stream.isOpen, true, "a node stream closed with the uplink's bad frame");
        const uplink = await uplinkFor(net.summary, net.uplink.serverKey);
        const datagram = wireguardMessage(4);
        stream.sendDatagrams([datagram]);
        assert.deepEqual(await atUplink(uplink, 1), [[node.tag, datagram]]);
      });
    }
  });
}
