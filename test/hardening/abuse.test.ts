/**
 * Abuse limits of the Node relay: Provision rate limits per client address and per network
 * (ResourceExhausted with Retry-After), the tunnel cap, the per-stream datagram token bucket,
 * the admin secret on the admin API and the uplink, constantTimeEqual (the one way the relay
 * compares secrets), and revocation of join tokens and nodes. (The peer cap: the relay
 * contract, test/contract/.)
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { constantTimeEqual } from "../../relay/app/secrets.ts";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseNetworkPrefix } from "../../shared/net/ip.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import {
  base64,
  createNetwork,
  NodeStream,
  randomKey,
  startRelay,
  tempDir,
  transportMessage,
  Uplink,
} from "../relay/helpers.ts";
import { eventually } from "../support/eventually.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

interface ProvisionAnswer {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly body: { code?: string; message?: string; grpcPeerAddrPort?: string };
}

/** Provision over Connect JSON, so the test reads the status, headers and error as sent. */
async function provision(
  server: RelayServer,
  joinToken: string,
  nodeUuid: string = crypto.randomUUID(),
): Promise<ProvisionAnswer> {
  const response = await fetch(`${server.url}${PROVISION_PATH}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ nodeUuid, nodePublicKey: base64(randomKey()), joinToken }),
  });
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    body: (await response.json()) as ProvisionAnswer["body"],
  };
}

function admin(server: RelayServer, path: string, secret: string | undefined, method = "GET") {
  return fetch(`${server.url}${path}`, {
    method,
    headers: secret === undefined ? {} : { authorization: `Bearer ${secret}` },
  });
}

describe("abuse limits", () => {
  const dirs: { remove(): void }[] = [];
  const servers: RelayServer[] = [];
  const sockets: { close(): void }[] = [];

  async function relay(options: Parameters<typeof startRelay>[1] = {}): Promise<RelayServer> {
    const dir = tempDir();
    dirs.push(dir);
    const server = await startRelay(dir.path, options);
    servers.push(server);
    return server;
  }

  async function withUplink(server: RelayServer, name: string) {
    const network = await createNetwork(server, name);
    const uplink = new Uplink(server, name, network.uplinkSecret);
    sockets.push(uplink);
    await uplink.ready();
    return { network, uplink };
  }

  after(async () => {
    for (const socket of sockets) socket.close();
    for (const server of servers) await server.close();
    for (const dir of dirs) dir.remove();
  });

  test("refused Provision calls are rate limited per client address", async () => {
    const server = await relay({
      limits: { provisionFailuresPerClient: { burst: 3, perSecond: 0.1 } },
    });
    await withUplink(server, "perip");
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await provision(server, "perip.wrong-secret"));
    assert.deepEqual(
      answers.map((a) => a.body.code),
      ["permission_denied", "permission_denied", "permission_denied", "resource_exhausted"],
    );
    const limited = answers[3];
    assert.equal(limited.status, 429);
    assert.match(
      limited.body.message ?? "",
      /too many refused Provision calls from client 127\.0\.0\.1; retry in \d+ s/,
    );
    assert.ok(Number(limited.retryAfter) >= 1, `Retry-After ${limited.retryAfter}`);
  });

  test("a stranger's refused calls from a node's address do not lock the node out", async () => {
    const server = await relay({
      limits: {
        provisionPerClient: { burst: 5, perSecond: 0.01 },
        provisionFailuresPerClient: { burst: 5, perSecond: 0.01 },
      },
    });
    const { network } = await withUplink(server, "lockout");
    // The attack: far more guesses than any budget holds, from the address the node uses.
    const guesses = [];
    for (let i = 0; i < 20; i++) guesses.push((await provision(server, "lockout.guess")).body.code);
    assert.equal(guesses.at(-1), "resource_exhausted", "the stranger is throttled");
    const answer = await provision(server, network.joinToken!);
    assert.ok(answer.body.grpcPeerAddrPort, `the real node was refused: ${JSON.stringify(answer)}`);
  });

  test("behind a trusted proxy each X-Forwarded-For client has its own budget; elsewhere the header is ignored", async () => {
    const limits = { provisionFailuresPerClient: { burst: 2, perSecond: 0.01 } };
    const viaProxy = await relay({ limits, trustedProxies: [parseNetworkPrefix("127.0.0.1")] });
    await withUplink(viaProxy, "proxied");
    const from = (server: RelayServer, client: string) =>
      fetch(`${server.url}${PROVISION_PATH}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-forwarded-for": client },
        body: JSON.stringify({
          nodeUuid: crypto.randomUUID(),
          nodePublicKey: base64(randomKey()),
          joinToken: "proxied.wrong",
        }),
      }).then(async (response) => (await response.json()) as { code: string; message: string });
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await from(viaProxy, "198.51.100.1")).code);
    assert.deepEqual(codes, ["permission_denied", "permission_denied", "resource_exhausted"]);
    const limited = await from(viaProxy, "198.51.100.1");
    assert.match(limited.message, /from client 198\.51\.100\.1;/);
    assert.equal((await from(viaProxy, "198.51.100.2")).code, "permission_denied");

    // Without the setting, a client cannot pick its own key by writing the header.
    const direct = await relay({ limits });
    await withUplink(direct, "proxied");
    const spoofed = [];
    for (let i = 0; i < 3; i++) spoofed.push((await from(direct, `198.51.100.${i}`)).code);
    assert.deepEqual(spoofed, ["permission_denied", "permission_denied", "resource_exhausted"]);
  });

  test("plain gRPC Provision (HTTP/2) is rate limited per client address too", async () => {
    const server = await relay({
      limits: { provisionFailuresPerClient: { burst: 2, perSecond: 0.1 } },
    });
    await withUplink(server, "grpcip");
    const client = createClient(ProvisionService, createGrpcTransport({ baseUrl: server.url }));
    const codes: string[] = [];
    for (let i = 0; i < 3; i++) {
      try {
        await client.provision({
          nodeUuid: "00000000-0000-4000-8000-0000000000a3",
          nodePublicKey: base64(randomKey()),
          joinToken: "grpcip.x",
        });
      } catch (error) {
        codes.push(Code[ConnectError.from(error).code]);
      }
    }
    assert.deepEqual(codes, ["PermissionDenied", "PermissionDenied", "ResourceExhausted"]);
  });

  test("Provision is rate limited per network; bad tokens do not spend the network's budget", async () => {
    const server = await relay({
      limits: { provisionPerNetwork: { burst: 2, perSecond: 0.1 } },
    });
    const { network } = await withUplink(server, "pernet");
    for (let i = 0; i < 5; i++) {
      assert.equal((await provision(server, "pernet.wrong")).body.code, "permission_denied");
    }
    assert.ok((await provision(server, network.joinToken!)).body.grpcPeerAddrPort);
    assert.ok((await provision(server, network.joinToken!)).body.grpcPeerAddrPort);
    const limited = await provision(server, network.joinToken!);
    assert.equal(limited.body.code, "resource_exhausted");
    assert.match(limited.body.message ?? "", /from network pernet; retry in \d+ s/);
    assert.ok(Number(limited.retryAfter) >= 1);
  });

  test("the relay holds at most maxTunnels node streams; a node may replace its own", async () => {
    const server = await relay({ limits: { maxTunnels: 1 } });
    const { network, uplink } = await withUplink(server, "tunnels");
    const a = (await provision(server, network.joinToken!)).body.grpcPeerAddrPort!;
    const b = (await provision(server, network.joinToken!)).body.grpcPeerAddrPort!;
    const first = new NodeStream(server, "tunnels", a);
    sockets.push(first);
    await first.opened;
    await eventually(
      "the first tunnel in the hub",
      () => [...server.directory.live()][0]?.hub.nodeCount === 1,
    );
    const refused = new NodeStream(server, "tunnels", b);
    sockets.push(refused);
    const closed = await refused.waitClosed();
    assert.equal(closed.code, CloseCode.TryAgainLater);
    assert.match(closed.reason, /limit of 1 tunnels/);
    const replacement = new NodeStream(server, "tunnels", a);
    sockets.push(replacement);
    await replacement.opened;
    // It takes the address over once the server answers its handshake (hub ownership.ts).
    const initiation = new Uint8Array(148);
    initiation.set([1, 0, 0, 0, 0x2a, 0, 0, 0]);
    replacement.sendDatagrams([initiation]);
    await eventually("the initiation at the uplink", () => uplink.received.length === 1);
    const response = new Uint8Array(92);
    response.set([2, 0, 0, 0, 7, 0, 0, 0, 0x2a, 0, 0, 0]);
    uplink.sendDatagrams([{ tag: uplink.received[0].tag, datagram: response }]);
    assert.equal((await first.waitClosed()).code, CloseCode.Replaced);
  });

  test("a node stream over its token bucket has the excess dropped and counted", async () => {
    const server = await relay({ hubLimits: { nodeBurst: 10, nodeDatagramsPerSecond: 1 } });
    const { network, uplink } = await withUplink(server, "bucket");
    const addr = (await provision(server, network.joinToken!)).body.grpcPeerAddrPort!;
    const node = new NodeStream(server, "bucket", addr);
    sockets.push(node);
    await node.opened;
    node.sendDatagrams(Array.from({ length: 25 }, (_, i) => transportMessage(i)));
    await eventually(
      "10 datagrams at the uplink",
      () => uplink.received.length === 10 || undefined,
    );
    const runtime = await server.directory.runtime("bucket");
    await eventually(
      "15 rate-limited drops",
      () => runtime.hub.metrics.drops.rate_limited === 15 || undefined,
    );
    const metrics = await (
      await admin(server, "/v1/networks/bucket/metrics", network.adminSecret)
    ).text();
    assert.match(
      metrics,
      /siderolink_relay_drops_total\{network="bucket",reason="rate_limited"\} 15/,
    );
    assert.equal(node.closed, undefined, "the stream stays open");
  });

  test("the admin API wants the network's admin secret or the operator token", async () => {
    const server = await relay();
    const one = await createNetwork(server, "one");
    const two = await createNetwork(server, "two");
    assert.equal((await admin(server, "/v1/networks/one/nodes", undefined)).status, 401);
    assert.equal((await admin(server, "/v1/networks/one/nodes", "guess")).status, 401);
    assert.equal((await admin(server, "/v1/networks/one/nodes", two.adminSecret)).status, 401);
    assert.equal(
      (await admin(server, "/v1/networks", one.adminSecret)).status,
      401,
      "operator route",
    );
    assert.equal((await admin(server, "/v1/networks/one/nodes", one.adminSecret)).status, 200);
    assert.equal(
      (await admin(server, "/v1/networks/one/nodes", "operator-test-token")).status,
      200,
    );
  });

  test("the uplink wants its own network's uplink secret", async () => {
    const server = await relay();
    const alpha = await createNetwork(server, "alpha");
    const beta = await createNetwork(server, "beta");
    for (const secret of [
      "",
      "guess",
      beta.uplinkSecret,
      beta.adminSecret,
      alpha.adminSecret,
      "operator-test-token",
    ]) {
      const uplink = new Uplink(server, "alpha", secret);
      sockets.push(uplink);
      const closed = await uplink.waitClosed();
      assert.equal(
        closed.code,
        CloseCode.Unauthorized,
        `secret ${JSON.stringify(secret.slice(0, 5))}`,
      );
    }
  });

  test("constantTimeEqual is right for equal, different, prefix and empty inputs", () => {
    assert.equal(constantTimeEqual("abc", "abc"), true);
    assert.equal(constantTimeEqual("abc", "abd"), false);
    assert.equal(constantTimeEqual("abc", "ab"), false);
    assert.equal(constantTimeEqual("", "a"), false);
    assert.equal(constantTimeEqual("", ""), true);
    assert.equal(constantTimeEqual("é", "e\u0301"), false);
  });

  test("a revoked node's stream closes at once and it cannot reconnect; a revoked token cannot provision", async () => {
    const server = await relay();
    const { network, uplink } = await withUplink(server, "revoke");
    const nodeUuid = crypto.randomUUID();
    const addr = (await provision(server, network.joinToken!, nodeUuid)).body.grpcPeerAddrPort!;
    const other = (await provision(server, network.joinToken!)).body.grpcPeerAddrPort!;
    const stream = new NodeStream(server, "revoke", addr);
    const bystander = new NodeStream(server, "revoke", other);
    sockets.push(stream, bystander);
    await Promise.all([stream.opened, bystander.opened]);

    const response = await admin(
      server,
      `/v1/networks/revoke/nodes/${nodeUuid}`,
      network.adminSecret,
      "DELETE",
    );
    assert.equal(response.status, 200);
    // The close is sent before the admin call answers: no waiting for a sweep.
    const closed = await eventually("the revoked stream's close", () => stream.closed, 500);
    assert.equal(closed.code, CloseCode.PeerRemoved);
    assert.ok(
      uplink.control.some((m) => m.type === 0x12),
      "the uplink was told PEER_REMOVED",
    );
    const again = new NodeStream(server, "revoke", addr);
    sockets.push(again);
    assert.equal((await again.waitClosed()).code, CloseCode.PeerNotAllowed);
    assert.equal(bystander.closed, undefined, "other nodes keep their streams");

    const tokens = (await (
      await admin(server, "/v1/networks/revoke/tokens", network.adminSecret)
    ).json()) as {
      tokens: { id: string }[];
    };
    const revoked = await admin(
      server,
      `/v1/networks/revoke/tokens/${tokens.tokens[0].id}`,
      network.adminSecret,
      "DELETE",
    );
    assert.equal(revoked.status, 200);
    assert.equal((await provision(server, network.joinToken!)).body.code, "permission_denied");
  });
});
