/**
 * HTTP/2 exhaustion against the Node relay, performed over loopback by a client that writes its
 * own frames: more streams than allowed, half-open Provision calls, CreateStream calls that
 * never send a message, idle sessions and connection floods. The relay must advertise and
 * enforce its stream cap, end stalled calls with DEADLINE_EXCEEDED, close idle sessions, refuse
 * connections beyond its caps, and give back the memory an attack took once it ends.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import http2 from "node:http2";
import net from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { DEFAULT_CONNECTION_LIMITS } from "../../relay/node/connection-limits.ts";
import type { RelayServer } from "../../relay/node/server.ts";
import { base64, createNetwork, randomKey, startRelay, tempDir, Uplink } from "../relay/helpers.ts";
import { eventually } from "../support/eventually.ts";
import { H2Error, RawHttp2Client } from "./support/raw-http2.ts";
import { RelayProcess } from "./support/relay-process.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";
const CREATE_STREAM_PATH = "/sidero.link.WireGuardOverGRPCService/CreateStream";
const GRPC_DEADLINE_EXCEEDED = "4";
const STREAM_CAP = 8;
const SHORT_MS = 400;
const PROTO_DIR = join(import.meta.dirname, "../../shared/proto");

type Unary = (
  request: object,
  callback: (error: grpc.ServiceError | null, reply: { grpc_peer_addr_port: string }) => void,
) => void;

/** Talos's side: a grpc-js Provision client, which must keep working during an attack. */
function provisionClient(port: number) {
  const definition = protoLoader.loadSync(["sidero/link/provision.proto"], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js builds client constructors at run time.
  const link = (grpc.loadPackageDefinition(definition) as any).sidero.link;
  const client = new link.ProvisionService(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  ) as grpc.Client & { Provision: Unary };
  return {
    provision: (request: object) =>
      new Promise<{ grpc_peer_addr_port: string }>((resolve, reject) =>
        client.Provision(request, (error, reply) => (error ? reject(error) : resolve(reply))),
      ),
    close: () => client.close(),
  };
}

/** A gRPC call over node:http2 that sends headers and never a message; resolves its status. */
async function stalledCall(
  session: http2.ClientHttp2Session,
  path: string,
  headers: Record<string, string> = {},
): Promise<string | undefined> {
  const stream = session.request(
    {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...headers,
    },
    { endStream: false },
  );
  let status: string | undefined;
  const record = (received: http2.IncomingHttpHeaders): void => {
    const value = received["grpc-status"];
    if (typeof value === "string") status = value;
  };
  stream.on("response", record);
  stream.on("trailers", record);
  stream.on("error", () => {});
  stream.resume();
  await once(stream, "close");
  return status;
}

describe("HTTP/2 limits on the Node relay", () => {
  const dir = tempDir();
  let server: RelayServer;
  let joinToken: string;
  let uplink: Uplink;
  let client: ReturnType<typeof provisionClient>;
  const attackers: { close(): void }[] = [];

  before(async () => {
    server = await startRelay(dir.path, {
      connections: {
        maxConcurrentStreams: STREAM_CAP,
        idleSessionTimeoutMs: SHORT_MS,
        provisionDeadlineMs: SHORT_MS,
        firstMessageDeadlineMs: SHORT_MS,
        maxConnectionsPerAddress: 4,
      },
    });
    const network = await createNetwork(server, "h2");
    joinToken = network.joinToken!;
    uplink = new Uplink(server, "h2", network.uplinkSecret!);
    await uplink.ready();
    client = provisionClient(server.port);
  });

  after(async () => {
    for (const attacker of attackers) attacker.close();
    client.close();
    uplink.close();
    await server.close();
    dir.remove();
  });

  test("the default stream cap is advertised in SETTINGS", async () => {
    const other = tempDir();
    const relay = await startRelay(other.path);
    try {
      const session = http2.connect(relay.url);
      session.on("error", () => {});
      await once(session, "remoteSettings");
      assert.equal(
        session.remoteSettings.maxConcurrentStreams,
        DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams,
      );
      assert.ok(DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams <= 128);
      session.destroy();
    } finally {
      await relay.close();
      other.remove();
    }
  });

  test("streams beyond the cap are refused while a Provision on another connection succeeds", async () => {
    // A client that has not acknowledged the cap yet gets each stream beyond it refused.
    const racing = new RawHttp2Client(server.port, "127.0.0.2", false);
    attackers.push(racing);
    await racing.ready();
    assert.equal(racing.maxConcurrentStreams, STREAM_CAP);
    const ids: number[] = [];
    for (let i = 0; i < STREAM_CAP + 5; i++) ids.push(racing.openHalfOpen(PROVISION_PATH));
    const beyond = ids.slice(STREAM_CAP);
    await eventually("the streams beyond the cap to be refused", () =>
      beyond.every((id) => racing.resets.get(id) === H2Error.RefusedStream),
    );
    for (const id of ids.slice(0, STREAM_CAP))
      assert.notEqual(racing.resets.get(id), H2Error.RefusedStream, `stream ${id} refused`);

    // A client that acknowledged it and still opens more loses the connection.
    const insisting = new RawHttp2Client(server.port, "127.0.0.2");
    attackers.push(insisting);
    await insisting.ready();
    for (let i = 0; i < STREAM_CAP + 1; i++) insisting.openHalfOpen(PROVISION_PATH);
    await eventually("the connection to end with GOAWAY", () => insisting.goAway !== undefined);
    assert.equal(insisting.goAway, H2Error.ProtocolError);

    const reply = await client.provision({
      node_uuid: "00000000-0000-4000-8000-00000000a001",
      node_public_key: base64(randomKey()),
      join_token: joinToken,
    });
    assert.match(reply.grpc_peer_addr_port, /^\[[0-9a-f:]+\]:\d+$/);
    racing.close();
    insisting.close();
  });

  test("an idle HTTP/2 session is closed by the relay", { timeout: 10_000 }, async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    await once(session, "connect");
    await once(session, "close");
    assert.ok(session.closed || session.destroyed);
  });

  test("a half-open Provision ends with DEADLINE_EXCEEDED", { timeout: 10_000 }, async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    try {
      assert.equal(await stalledCall(session, PROVISION_PATH), GRPC_DEADLINE_EXCEEDED);
    } finally {
      session.destroy();
    }
  });

  test("a CreateStream that sends no first message is closed with DEADLINE_EXCEEDED", {
    timeout: 10_000,
  }, async () => {
    const reply = await client.provision({
      node_uuid: "00000000-0000-4000-8000-00000000a002",
      node_public_key: base64(randomKey()),
      join_token: joinToken,
    });
    const session = http2.connect(server.url);
    session.on("error", () => {});
    try {
      const status = await stalledCall(session, CREATE_STREAM_PATH, {
        "x-siderolink-ipv6-addr": reply.grpc_peer_addr_port,
      });
      assert.equal(status, GRPC_DEADLINE_EXCEEDED);
    } finally {
      session.destroy();
    }
  });

  test("connections beyond the per-address cap are closed at once while others work", {
    timeout: 10_000,
  }, async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < 4; i++) {
      const socket = net.connect({
        port: server.port,
        host: "127.0.0.1",
        localAddress: "127.0.0.3",
      });
      socket.on("error", () => {});
      attackers.push({ close: () => socket.destroy() });
      held.push(socket);
      await once(socket, "connect");
    }
    const extra = net.connect({ port: server.port, host: "127.0.0.1", localAddress: "127.0.0.3" });
    extra.on("error", () => {});
    await once(extra, "close");
    assert.ok(
      held.every((socket) => !socket.destroyed),
      "the first four stay open",
    );
    const response = await fetch(`${server.url}/healthz`);
    assert.equal(response.status, 200);
    for (const socket of held) socket.destroy();
  });
});

describe("total connection cap", () => {
  test("connections beyond the relay's cap are closed at once", { timeout: 10_000 }, async () => {
    const dir = tempDir();
    const server = await startRelay(dir.path, { connections: { maxConnections: 3 } });
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const socket = net.connect({
          port: server.port,
          host: "127.0.0.1",
          localAddress: `127.0.1.${i + 1}`,
        });
        socket.on("error", () => {});
        held.push(socket);
        await once(socket, "connect");
      }
      const extra = net.connect({
        port: server.port,
        host: "127.0.0.1",
        localAddress: "127.0.1.9",
      });
      extra.on("error", () => {});
      await once(extra, "close");
      assert.ok(held.every((socket) => !socket.destroyed));
      for (const socket of held.splice(0)) socket.destroy();
      const response = await eventually("a connection once the others closed", async () => {
        const answer = await fetch(`${server.url}/healthz`);
        return answer.status === 200 && answer;
      });
      assert.equal(response.status, 200);
    } finally {
      for (const socket of held) socket.destroy();
      await server.close();
      dir.remove();
    }
  });
});

describe("siderolink-relay serve", () => {
  /** Starts `serve` on a free port and resolves its URL from what it logs. */
  async function serve(args: string[], env: Record<string, string> = {}) {
    const dir = tempDir();
    const child = spawn(
      process.execPath,
      [
        join(import.meta.dirname, "../../relay/cli.ts"),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data",
        dir.path,
        ...args,
      ],
      { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] },
    );
    let log = "";
    child.stderr.on("data", (chunk: Buffer) => {
      log += chunk.toString();
    });
    const url = await eventually(
      "the relay to listen",
      () => /listening on (\S+);/.exec(log)?.[1],
      15_000,
    );
    return {
      url,
      async stop() {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        await exited;
        dir.remove();
      },
    };
  }

  async function advertisedStreams(url: string): Promise<number | undefined> {
    const session = http2.connect(url);
    session.on("error", () => {});
    await once(session, "remoteSettings");
    const value = session.remoteSettings.maxConcurrentStreams;
    session.destroy();
    return value;
  }

  test("--max-streams and its environment variable set the advertised cap", {
    timeout: 30_000,
  }, async () => {
    const flagged = await serve(["--max-streams", "7"], { SIDEROLINK_RELAY_MAX_STREAMS: "9" });
    try {
      assert.equal(await advertisedStreams(flagged.url), 7);
    } finally {
      await flagged.stop();
    }
    const fromEnv = await serve([], { SIDEROLINK_RELAY_MAX_STREAMS: "9" });
    try {
      assert.equal(await advertisedStreams(fromEnv.url), 9);
    } finally {
      await fromEnv.stop();
    }
  });
});

describe("memory under a half-open stream flood", () => {
  const CONNECTIONS = 4;
  const STREAMS = 2_000;
  /** Heap the relay may keep after the attack beyond its baseline (caches warmed, JIT). */
  const MARGIN_BYTES = 12 * 1024 * 1024;
  const dir = tempDir();
  let relay: RelayProcess;

  before(async () => {
    relay = await RelayProcess.start({ dataDir: dir.path, network: "flood" });
  });

  after(async () => {
    await relay.stop();
    dir.remove();
  });

  test("2,000 half-open Provision streams are bounded, and the heap returns to baseline", {
    timeout: 60_000,
  }, async (t) => {
    // Warm the code paths once so that what they allocate for good is in the baseline.
    const warm = new RawHttp2Client(relay.port);
    await warm.ready();
    warm.openHalfOpen(PROVISION_PATH);
    warm.close();
    await eventually("the warm-up connection to close", () => warm.closed);
    const baseline = (await relay.stats()).heapUsed;

    const attackers = Array.from(
      { length: CONNECTIONS },
      () => new RawHttp2Client(relay.port, "127.0.0.1", false),
    );
    await Promise.all(attackers.map((attacker) => attacker.ready()));
    for (let i = 0; i < STREAMS; i++) attackers[i % CONNECTIONS].openHalfOpen(PROVISION_PATH);
    const cap = DEFAULT_CONNECTION_LIMITS.maxConcurrentStreams;
    // The relay holds at most its cap per connection and refuses the rest (or drops the
    // connection that insists), so the attack's footprint is bounded while it lasts.
    await eventually(
      "the streams beyond the cap to be refused",
      () =>
        attackers.every(
          (attacker) =>
            attacker.closed ||
            [...attacker.resets.values()].filter((code) => code === H2Error.RefusedStream).length >=
              STREAMS / CONNECTIONS - cap,
        ),
      30_000,
    );
    const during = (await relay.stats()).heapUsed;
    for (const attacker of attackers) attacker.close();
    const settled = await eventually(
      "the relay's heap back near its baseline",
      async () => {
        const { heapUsed } = await relay.stats();
        return heapUsed <= baseline + MARGIN_BYTES && heapUsed;
      },
      30_000,
      200,
    ).catch((error: unknown) => {
      throw new Error(`heap baseline ${baseline}, during ${during}: ${String(error)}`);
    });
    t.diagnostic(`heapUsed: baseline ${baseline}, during the attack ${during}, after ${settled}`);
  });
});
