import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { encodeAck } from "../../shared/tunnel/encode.ts";
import { FrameType } from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";
import { base64, createNetwork, randomKey, startRelay, tempDir, Uplink } from "./helpers.ts";

const dir = tempDir();
let server: RelayServer;
let joinToken: string;
let adminSecret: string;
let uplink: Uplink | undefined;

before(async () => {
  server = await startRelay(dir.path);
  const network = await createNetwork(server, "prov");
  joinToken = network.joinToken!;
  adminSecret = network.adminSecret;
});

after(async () => {
  uplink?.close();
  await server.close();
  dir.remove();
});

const transports = {
  "gRPC-web": () => createGrpcWebTransport({ baseUrl: server.url }),
  Connect: () => createConnectTransport({ baseUrl: server.url }),
};

async function expectCode(call: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `code ${Code[error.code]}: ${error.rawMessage}`);
    assert.match(error.rawMessage, message);
    return true;
  });
}

for (const [name, transport] of Object.entries(transports)) {
  describe(`Provision over ${name}`, () => {
    let client: Client<typeof ProvisionService>;
    before(() => {
      client = createClient(ProvisionService, transport());
    });

    test("a wrong or foreign join token is PermissionDenied", async () => {
      const request = { nodeUuid: "n-1", nodePublicKey: base64(randomKey()) };
      await expectCode(
        client.provision({ ...request, joinToken: "prov.wrong" }),
        Code.PermissionDenied,
        /^invalid join token$/,
      );
      await expectCode(
        client.provision({ ...request, joinToken: "nosuch.secret" }),
        Code.PermissionDenied,
        /^invalid join token$/,
      );
      await expectCode(
        client.provision({ ...request }),
        Code.PermissionDenied,
        /^invalid join token$/,
      );
    });

    test("a bad public key is InvalidArgument naming node_public_key", async () => {
      for (const key of ["", "not base64!", base64(new Uint8Array(31))]) {
        await expectCode(
          client.provision({ nodeUuid: "n-1", nodePublicKey: key, joinToken }),
          Code.InvalidArgument,
          /node_public_key/,
        );
      }
    });
  });
}

describe("Provision with and without the server uplink", () => {
  const client = () =>
    createClient(ProvisionService, createGrpcWebTransport({ baseUrl: server.url }));

  test("without an uplink the answer is Unavailable and says the server is not connected", async () => {
    await expectCode(
      client().provision({ nodeUuid: "n-1", nodePublicKey: base64(randomKey()), joinToken }),
      Code.Unavailable,
      /management server is not connected/,
    );
  });

  test("with an uplink: tunnel addresses, server key, and the peer reaches the uplink first", async () => {
    uplink = new Uplink(server, "prov", adminSecret);
    await uplink.ready();
    const nodeKey = randomKey();
    const response = await createClient(
      ProvisionService,
      createConnectTransport({ baseUrl: server.url }),
    ).provision({
      nodeUuid: "uuid-a",
      nodeUniqueToken: "unique-a",
      nodePublicKey: base64(nodeKey),
      joinToken,
      wireguardOverGrpc: true,
    });
    assert.equal(response.serverPublicKey, base64(uplink.serverKey));
    assert.match(response.grpcPeerAddrPort, /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:50888$/);
    assert.deepEqual(response.serverEndpoint, [response.grpcPeerAddrPort]);
    const network = await (await server.directory.runtime("prov")).store.network();
    assert.ok(network);
    assert.match(response.nodeAddressPrefix, /^fd[0-9a-f:]+\/64$/);
    const prefix = response.serverAddress.replace(/::1$/, "");
    assert.ok(
      response.nodeAddressPrefix.startsWith(`${prefix}:`),
      `${response.nodeAddressPrefix} in ${prefix}::/64`,
    );
    const added = uplink.control.find((m) => m.type === FrameType.PeerAdded);
    assert.ok(
      added && added.type === FrameType.PeerAdded,
      "the uplink heard PEER_ADDED before the reply",
    );
    assert.deepEqual(added.peer.publicKey, nodeKey);
  });

  test("re-provision with a new key keeps both addresses and replaces the key", async () => {
    const first = await client().provision({
      nodeUuid: "uuid-b",
      nodeUniqueToken: "t",
      nodePublicKey: base64(randomKey()),
      joinToken,
    });
    const newKey = randomKey();
    const again = await client().provision({
      nodeUuid: "uuid-b",
      nodeUniqueToken: "t",
      nodePublicKey: base64(newKey),
      joinToken,
    });
    assert.equal(again.nodeAddressPrefix, first.nodeAddressPrefix);
    assert.equal(again.grpcPeerAddrPort, first.grpcPeerAddrPort);
    const other = await client().provision({
      nodeUuid: "uuid-b",
      nodeUniqueToken: "other",
      nodePublicKey: base64(randomKey()),
      joinToken,
    });
    assert.notEqual(other.nodeAddressPrefix, first.nodeAddressPrefix);
    const peers = await (await server.directory.runtime("prov")).store.peers();
    const b = peers.filter((p) => p.nodeUuid === "uuid-b" && p.uniqueToken === "t");
    assert.equal(b.length, 1);
    assert.equal(b[0].publicKey, base64(newKey));
    const removed = uplink!.control.filter((m) => m.type === FrameType.PeerRemoved);
    assert.equal(removed.length, 1, "the old key was removed from the uplink");
  });

  test("the reply waits for the uplink's ACK", async () => {
    uplink!.autoAck = false;
    const before = uplink!.control.length;
    let answered = false;
    const call = client()
      .provision({ nodeUuid: "uuid-c", nodePublicKey: base64(randomKey()), joinToken })
      .then((response) => {
        answered = true;
        return response;
      });
    const event = await eventually("PEER_ADDED for uuid-c", () =>
      uplink!.control.slice(before).find((m) => m.type === FrameType.PeerAdded),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(answered, false, "no reply before the ACK");
    uplink!.autoAck = true;
    assert.equal(event.type, FrameType.PeerAdded);
    uplink!.send(encodeAck(event.seq));
    await call;
    assert.equal(answered, true);
    const metrics = (await server.directory.runtime("prov")).hub.metrics;
    assert.ok(metrics.acks >= 1);
  });
});

describe("Provision when the uplink does not confirm the peer", () => {
  const client = (relay: RelayServer) =>
    createClient(ProvisionService, createGrpcWebTransport({ baseUrl: relay.url }));

  /** A relay whose uplinks wait `ackTimeoutMs` for ACKs, a network, and an uplink that never ACKs. */
  async function silentUplink(ackTimeoutMs: number) {
    const relayDir = tempDir();
    const relay = await startRelay(relayDir.path, { hubLimits: { ackTimeoutMs } });
    const network = await createNetwork(relay, "quiet");
    const silent = new Uplink(relay, "quiet", network.adminSecret);
    silent.autoAck = false;
    await silent.ready();
    const stop = async () => {
      silent.close();
      await relay.close();
      relayDir.remove();
    };
    return { relay, token: network.joinToken!, silent, stop };
  }

  test("an uplink that never ACKs: Unavailable, saying what to check", async () => {
    const lab = await silentUplink(200);
    try {
      await expectCode(
        client(lab.relay).provision({
          nodeUuid: "n-unacked",
          nodePublicKey: base64(randomKey()),
          joinToken: lab.token,
        }),
        Code.Unavailable,
        /^the management server did not confirm the new peer in time; check that siderolink-sidecar serve is running for network "quiet" and try again$/,
      );
      assert.ok(
        lab.silent.control.some((m) => m.type === FrameType.PeerAdded),
        "the uplink was told about the peer",
      );
    } finally {
      await lab.stop();
    }
  });

  test("an uplink that closes while the relay waits: Unavailable, saying what to check", async () => {
    // The wait outlasts the test: only the uplink's going can end it.
    const lab = await silentUplink(600_000);
    try {
      const call = client(lab.relay).provision({
        nodeUuid: "n-gone",
        nodePublicKey: base64(randomKey()),
        joinToken: lab.token,
      });
      await eventually("PEER_ADDED at the uplink", () =>
        lab.silent.control.find((m) => m.type === FrameType.PeerAdded),
      );
      lab.silent.close();
      await expectCode(
        call,
        Code.Unavailable,
        /^the management server's uplink closed before it confirmed the new peer; check that siderolink-sidecar serve is running for network "quiet" and try again$/,
      );
    } finally {
      await lab.stop();
    }
  });
});
