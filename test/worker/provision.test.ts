/**
 * Provision on the Worker in real workerd, through connect-web's Connect and gRPC-web
 * transports: the Worker finds the network from the join token in the body, and the network's
 * Durable Object answers.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  createNetwork,
  provisionClient,
  provisionWithAck,
  randomKey,
  TestUplink,
  uniqueNetworkName,
  WAIT_MS,
} from "./support/clients.ts";
import { ackFrame, ipv6Bytes, readPeerEvent } from "./support/frames.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";

/** VirtualNetworkPrefix (Talos): fdae:41e4:649b:9304::/64. */
const VIRTUAL_PREFIX = ipv6Bytes("fdae:41e4:649b:9304::").subarray(0, 8);

let relay: WorkerRelay;

before(async () => {
  relay = await startWorkerRelay();
});

after(async () => {
  await relay?.stop();
  if (relay) await removePersistDirectory(relay);
});

async function rejects(promise: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(Code[error.code], Code[code], error.message);
    assert.match(error.rawMessage, message);
    return true;
  });
}

for (const [protocol, format] of [
  ["connect", "binary"],
  ["connect", "json"],
  ["grpc-web", "binary"],
  ["grpc-web", "json"],
] as const) {
  describe(`Provision over ${protocol} (${format})`, () => {
    test("a wrong, unknown or missing join token is PermissionDenied", async () => {
      const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName());
      const client = provisionClient(relay.url, protocol, format);
      const base = { nodeUuid: randomUUID(), nodePublicKey: randomKey() };
      const wrongSecret = `${network.name}.${"x".repeat(43)}`;
      await rejects(
        client.provision({ ...base, joinToken: wrongSecret }),
        Code.PermissionDenied,
        /^invalid join token$/,
      );
      const otherNetwork = `${uniqueNetworkName()}.${network.joinToken.split(".")[1]}`;
      await rejects(
        client.provision({ ...base, joinToken: otherNetwork }),
        Code.PermissionDenied,
        /^invalid join token$/,
      );
      await rejects(
        client.provision({ ...base, joinToken: "no-dot" }),
        Code.PermissionDenied,
        /^invalid join token$/,
      );
      await rejects(client.provision(base), Code.PermissionDenied, /^invalid join token$/);
    });

    test("a key that is not 32 bytes of base64 is InvalidArgument naming node_public_key", async () => {
      const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName());
      const client = provisionClient(relay.url, protocol, format);
      for (const key of ["", "not base64!", Buffer.alloc(31).toString("base64")]) {
        await rejects(
          client.provision({
            nodeUuid: randomUUID(),
            nodePublicKey: key,
            joinToken: network.joinToken,
          }),
          Code.InvalidArgument,
          /node_public_key/,
        );
      }
    });

    test("without a server uplink the answer is Unavailable", async () => {
      const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName());
      const client = provisionClient(relay.url, protocol, format);
      await rejects(
        client.provision({
          nodeUuid: randomUUID(),
          nodePublicKey: randomKey(),
          joinToken: network.joinToken,
        }),
        Code.Unavailable,
        /management server is not connected/,
      );
    });

    test("with an uplink: the reply follows the uplink's ACK and always tunnels", async () => {
      const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName());
      const uplink = await new TestUplink(relay.url, network.name, network.adminSecret).hello();
      try {
        assert.deepEqual(uplink.peerList, { seq: uplink.peerList!.seq, last: true, peers: [] });
        const client = provisionClient(relay.url, protocol, format);
        const nodePublicKey = randomKey();
        const nodeUuid = randomUUID();
        const request = {
          nodeUuid,
          nodePublicKey,
          joinToken: network.joinToken,
          nodeUniqueToken: "u1",
        };
        const { response, event } = await provisionWithAck(client, uplink, request);

        assert.equal(response.serverPublicKey, uplink.serverKeyText);
        assert.equal(response.serverAddress, network.serverAddress);
        const [address, length] = response.nodeAddressPrefix.split("/");
        assert.equal(length, "64");
        const addressBytes = ipv6Bytes(address);
        assert.deepEqual(
          addressBytes.subarray(0, 8),
          ipv6Bytes(network.prefix.split("/")[0]).subarray(0, 8),
        );
        assert.match(response.grpcPeerAddrPort, /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:50888$/);
        const virtualAddress = ipv6Bytes(response.grpcPeerAddrPort);
        assert.deepEqual(virtualAddress.subarray(0, 8), VIRTUAL_PREFIX);
        assert.deepEqual(response.serverEndpoint, [response.grpcPeerAddrPort]);

        assert.equal(event.type, 0x11, "PEER_ADDED");
        assert.equal(Buffer.from(event.publicKey).toString("base64"), nodePublicKey);
        assert.deepEqual(event.address, addressBytes);
        assert.deepEqual(event.virtualAddress, virtualAddress);

        // The same node (UUID + unique token) with a new key keeps both addresses; the uplink
        // hears the old key removed and the new one added.
        const again = await provisionWithAck(client, uplink, {
          ...request,
          nodePublicKey: randomKey(),
        });
        assert.equal(again.response.nodeAddressPrefix, response.nodeAddressPrefix);
        assert.equal(again.response.grpcPeerAddrPort, response.grpcPeerAddrPort);
        const removed = uplink.events.find((e) => e.type === 0x12);
        assert.ok(removed, "PEER_REMOVED for the old key");
        assert.equal(Buffer.from(removed.publicKey).toString("base64"), nodePublicKey);
      } finally {
        uplink.socket.close();
      }
    });
  });
}

test("the reply waits for the uplink's ACK of the new peer", async () => {
  const network = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName());
  const uplink = await new TestUplink(relay.url, network.name, network.adminSecret).hello();
  try {
    const client = provisionClient(relay.url, "connect");
    let answered = false;
    const reply = client
      .provision(
        { nodeUuid: randomUUID(), nodePublicKey: randomKey(), joinToken: network.joinToken },
        { signal: AbortSignal.timeout(WAIT_MS) },
      )
      .finally(() => {
        answered = true;
      });
    const frame = await uplink.socket.nextBinary("PEER_ADDED");
    const event = readPeerEvent(frame);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(answered, false, "Provision answered before the uplink acknowledged the peer");
    uplink.socket.send(ackFrame(event.seq));
    const response = await reply;
    assert.deepEqual(ipv6Bytes(response.grpcPeerAddrPort), event.virtualAddress);
  } finally {
    uplink.socket.close();
  }
});
