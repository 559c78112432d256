/**
 * The Node relay as a Talos machine sees it: plain gRPC over HTTP/2 (h2c) through @grpc/grpc-js
 * with the schema loaded from shared/proto by @grpc/proto-loader, an implementation
 * independent of the relay's own.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { RelayServer } from "../../relay/node/server.ts";
import { parseAddrPort } from "../../shared/net/ip.ts";
import { eventually } from "../support/eventually.ts";
import {
  base64,
  createNetwork,
  markerOf,
  randomKey,
  startRelay,
  tempDir,
  transportMessage,
  Uplink,
} from "./helpers.ts";

const PROTO_DIR = join(import.meta.dirname, "../../shared/proto");

interface ProvisionReply {
  server_endpoint: string[];
  server_public_key: string;
  node_address_prefix: string;
  server_address: string;
  grpc_peer_addr_port: string;
}

type Unary = (
  request: object,
  callback: (error: grpc.ServiceError | null, reply: ProvisionReply) => void,
) => void;

function loadClients(target: string) {
  const definition = protoLoader.loadSync(
    ["sidero/link/provision.proto", "sidero/link/wireguard.proto"],
    {
      includeDirs: [PROTO_DIR],
      keepCase: true,
    },
  );
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js builds client constructors at run time.
  const link = (grpc.loadPackageDefinition(definition) as any).sidero.link;
  const credentials = grpc.credentials.createInsecure();
  return {
    provision: new link.ProvisionService(target, credentials) as grpc.Client & { Provision: Unary },
    wireguard: new link.WireGuardOverGRPCService(target, credentials) as grpc.Client & {
      CreateStream(
        metadata: grpc.Metadata,
      ): grpc.ClientDuplexStream<{ Data: Uint8Array }, { Data: Buffer }>;
    },
  };
}

const dir = tempDir();
let server: RelayServer;
let clients: ReturnType<typeof loadClients>;
let joinToken: string;
let uplink: Uplink;

before(async () => {
  server = await startRelay(dir.path);
  const network = await createNetwork(server, "grpc");
  joinToken = network.joinToken!;
  assert.match(
    network.apiUrl,
    /^grpc:\/\/127\.0\.0\.1:\d+\/?\?jointoken=grpc\.[^&]+&grpc_tunnel=true$/,
  );
  clients = loadClients(new URL(server.nodeBaseUrl).host);
  uplink = new Uplink(server, "grpc", network.adminSecret);
});

after(async () => {
  clients.provision.close();
  clients.wireguard.close();
  uplink.close();
  await server.close();
  dir.remove();
});

function provision(request: object): Promise<ProvisionReply> {
  return new Promise((resolve, reject) => {
    clients.provision.Provision(request, (error, reply) =>
      error ? reject(error) : resolve(reply),
    );
  });
}

/**
 * grpc-message is percent-encoded on the wire; grpc-js undoes it with decodeURI, which leaves
 * reserved characters (%3A for ':') encoded, so decode fully as Go's gRPC does for Talos.
 */
function details(error: grpc.ServiceError): string {
  return decodeURIComponent(error.details);
}

async function expectStatus(
  call: Promise<unknown>,
  code: grpc.status,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(call, (error: grpc.ServiceError) => {
    assert.equal(error.code, code, `status ${grpc.status[error.code]}: ${details(error)}`);
    assert.match(details(error), pattern);
    return true;
  });
}

describe("Provision over plain gRPC", () => {
  test("status codes: Unavailable, PermissionDenied, InvalidArgument", async () => {
    const key = base64(randomKey());
    await expectStatus(
      provision({ node_uuid: "u", node_public_key: key, join_token: joinToken }),
      grpc.status.UNAVAILABLE,
      /management server is not connected/,
    );
    await expectStatus(
      provision({ node_uuid: "u", node_public_key: key, join_token: "grpc.nope" }),
      grpc.status.PERMISSION_DENIED,
      /^invalid join token$/,
    );
    await expectStatus(
      provision({ node_uuid: "u", node_public_key: "AAAA", join_token: joinToken }),
      grpc.status.INVALID_ARGUMENT,
      /^node_public_key: /,
    );
  });

  test("a provisioned node gets the tunnel endpoint and the server's key", async () => {
    await uplink.ready();
    const reply = await provision({
      node_uuid: "talos-1",
      node_public_key: base64(randomKey()),
      join_token: joinToken,
      wireguard_over_grpc: true,
    });
    assert.equal(reply.server_public_key, base64(uplink.serverKey));
    assert.match(reply.grpc_peer_addr_port, /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:50888$/);
    assert.deepEqual(reply.server_endpoint, [reply.grpc_peer_addr_port]);
  });
});

describe("CreateStream over plain gRPC", () => {
  function open(address: string) {
    const metadata = new grpc.Metadata();
    if (address) metadata.set("x-siderolink-ipv6-addr", address);
    const stream = clients.wireguard.CreateStream(metadata);
    const received: Buffer[] = [];
    let ended: grpc.ServiceError | undefined;
    stream.on("data", (packet: { Data: Buffer }) => received.push(packet.Data));
    stream.on("error", (error: grpc.ServiceError) => {
      ended = error;
    });
    return { stream, received, error: () => ended };
  }

  test('an address that is not a provisioned peer is PermissionDenied "peer not allowed"', async () => {
    for (const address of ["[fdae:41e4:649b:9304::99]:50888", "", "garbage"]) {
      const call = open(address);
      const error = await eventually("the stream to fail", call.error);
      assert.equal(error.code, grpc.status.PERMISSION_DENIED, `${address}: ${error.details}`);
      assert.equal(error.details, "peer not allowed");
    }
  });

  test("datagrams flow both ways, and a second stream replaces the first with Aborted", async () => {
    const reply = await provision({
      node_uuid: "talos-2",
      node_public_key: base64(randomKey()),
      join_token: joinToken,
    });
    const tag = parseAddrPort(reply.grpc_peer_addr_port).address;
    const first = open(reply.grpc_peer_addr_port);
    first.stream.write({ Data: transportMessage(1) });
    first.stream.write({ Data: transportMessage(2) });
    await eventually(
      "both datagrams at the uplink",
      () => uplink.received.length >= 2 || undefined,
    );
    assert.deepEqual(
      uplink.received.map((r) => markerOf(r.datagram)),
      [1, 2],
    );
    assert.deepEqual(uplink.received[0].tag, tag);

    uplink.sendDatagrams([3, 4, 5].map((marker) => ({ tag, datagram: transportMessage(marker) })));
    await eventually("three datagrams at the node", () => first.received.length >= 3 || undefined);
    assert.deepEqual(
      first.received.map((d) => markerOf(d)),
      [3, 4, 5],
    );

    const runtime = await server.directory.runtime("grpc");
    first.stream.write({ Data: new Uint8Array([9, 9, 9]) });
    await eventually(
      "the 3-byte datagram dropped as not WireGuard",
      () => runtime.hub.metrics.drops.not_wireguard === 1 || undefined,
    );
    const second = open(reply.grpc_peer_addr_port);
    second.stream.write({ Data: transportMessage(6) });
    const error = await eventually("the first stream to end", first.error);
    assert.equal(error.code, grpc.status.ABORTED);
    assert.equal(error.details, "peer replaced");
    await eventually(
      "the second stream's datagram",
      () => uplink.received.some((r) => markerOf(r.datagram) === 6) || undefined,
    );
    uplink.sendDatagrams([{ tag, datagram: transportMessage(7) }]);
    await eventually(
      "the datagram on the second stream",
      () => second.received.length >= 1 || undefined,
    );
    assert.equal(markerOf(second.received[0]), 7);
    assert.equal(
      uplink.received.length,
      3,
      "nothing but the three WireGuard datagrams reached the uplink",
    );
    second.stream.end();
  });
});
