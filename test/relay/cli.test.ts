/** siderolink-relay and npm start as child processes, against a data dir and a running relay. */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { CloseCode, FrameType } from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";
import { base64, NodeStream, randomKey, startRelay, tempDir, Uplink } from "./helpers.ts";

const ROOT = join(import.meta.dirname, "../..");
const NODE = process.execPath;
const run = promisify(execFile);

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function relayCli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await run(NODE, [join(ROOT, "relay/cli.ts"), ...args], {
      env: { ...process.env, ...env },
      timeout: 15_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function json(result: Result): Record<string, unknown> {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

const provision = (server: RelayServer, joinToken: string, nodeUuid = "cli-node") =>
  createClient(ProvisionService, createConnectTransport({ baseUrl: server.url })).provision({
    nodeUuid,
    nodePublicKey: base64(randomKey()),
    joinToken,
  });

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe("siderolink-relay on a data dir", () => {
  test("--help explains the commands", async () => {
    const result = await relayCli(["--help"]);
    assert.equal(result.code, 0);
    for (const words of [
      "serve [--listen HOST:PORT]",
      "network create NAME",
      "token revoke",
      "node revoke",
      "node admit NETWORK UUID",
      "--relay URL",
    ]) {
      assert.ok(result.stdout.includes(words), words);
    }
    const bad = await relayCli(["network", "frobnicate"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown command "network frobnicate"/);
  });

  test("network create/show --json, and a revoked token stops provisioning", async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const data = ["--data", dir.path];
    const created = json(await relayCli(["network", "create", "lab", "--json", ...data]));
    assert.equal(created.name, "lab");
    assert.match(String(created.joinToken), /^lab\.[A-Za-z0-9_-]{43}$/);
    assert.match(String(created.adminSecret), /^[A-Za-z0-9_-]{43}$/);
    assert.equal(
      created.apiUrl,
      `grpc://127.0.0.1:8787?jointoken=${created.joinToken}&grpc_tunnel=true`,
    );
    const shown = json(await relayCli(["network", "show", "lab", "--json", ...data]));
    assert.deepEqual(
      [shown.name, shown.apiUrl, shown.joinToken, shown.adminSecret],
      [created.name, created.apiUrl, created.joinToken, created.adminSecret],
    );
    const again = await relayCli(["network", "create", "lab", ...data]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /network "lab" already exists/);
    const missing = await relayCli(["network", "show", "nope", ...data]);
    assert.match(
      missing.stderr,
      /network "nope" does not exist; create it with: siderolink-relay network create nope/,
    );

    const second = json(await relayCli(["token", "create", "lab", "--json", ...data]));
    const listed = json(await relayCli(["token", "list", "lab", "--json", ...data])) as {
      tokens: { id: string }[];
    };
    assert.equal(listed.tokens.length, 2);
    const first = listed.tokens.find((t) => t.id !== second.id)!;
    assert.equal(
      json(await relayCli(["token", "revoke", "lab", first.id, "--json", ...data])).revoked,
      first.id,
    );

    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const uplink = new Uplink(server, "lab", String(created.adminSecret));
    cleanups.push(() => uplink.close());
    await uplink.ready();
    await assert.rejects(provision(server, String(created.joinToken)), (error: ConnectError) => {
      assert.equal(error.code, Code.PermissionDenied);
      return true;
    });
    const reply = await provision(server, String(second.joinToken));
    assert.match(reply.grpcPeerAddrPort, /:50888$/);
    const nodes = json(await relayCli(["node", "list", "lab", "--json", ...data])) as {
      nodes: { nodeUuid: string }[];
    };
    assert.deepEqual(
      nodes.nodes.map((n) => n.nodeUuid),
      ["cli-node"],
    );
  });
});

describe("siderolink-relay --relay URL (admin API)", () => {
  test("creates networks, revokes tokens and nodes on a running relay", async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const remote = ["--relay", server.url];
    const env = { SIDEROLINK_RELAY_OPERATOR_TOKEN: "operator-test-token" };

    const denied = await relayCli(["network", "list", ...remote], {
      SIDEROLINK_RELAY_OPERATOR_TOKEN: "wrong",
    });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /HTTP 401: missing or wrong operator token/);

    const created = json(await relayCli(["network", "create", "edge", "--json", ...remote], env));
    assert.match(
      String(created.apiUrl),
      new RegExp(`^grpc://127\\.0\\.0\\.1:${server.port}\\?jointoken=edge\\.`),
    );
    assert.deepEqual(json(await relayCli(["network", "list", "--json", ...remote], env)), {
      networks: ["edge"],
    });
    const shown = json(await relayCli(["network", "show", "edge", "--json", ...remote], env));
    assert.equal(shown.adminSecret, created.adminSecret);

    const uplink = new Uplink(server, "edge", String(created.adminSecret));
    cleanups.push(() => uplink.close());
    await uplink.ready();

    const assigned = `${String(shown.prefix).replace(/::\/64$/, "")}::beef`;
    json(
      await relayCli(["node", "assign", "edge", "fixed-node", assigned, "--json", ...remote], env),
    );
    const outside = await relayCli(
      ["node", "assign", "edge", "fixed-node", "fd00::5", ...remote],
      env,
    );
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /HTTP 400: address fd00::5 is not a node address of network edge/);
    const fixed = await provision(server, String(created.joinToken), "fixed-node");
    assert.equal(fixed.nodeAddressPrefix, `${assigned}/64`);

    const reply = await provision(server, String(created.joinToken), "remote-node");
    const stream = new NodeStream(server, "edge", reply.grpcPeerAddrPort);
    cleanups.push(() => stream.close());
    await stream.opened;
    const runtime = await server.directory.runtime("edge");
    await eventually("the node stream", () => runtime.hub.nodeCount === 1 || undefined);

    const revoked = json(
      await relayCli(["node", "revoke", "edge", "remote-node", "--json", ...remote], env),
    ) as {
      revoked: { nodeUuid: string }[];
    };
    assert.deepEqual(
      revoked.revoked.map((n) => n.nodeUuid),
      ["remote-node"],
    );
    assert.equal((await stream.waitClosed()).code, CloseCode.PeerRemoved);
    await eventually(
      "PEER_REMOVED at the uplink",
      () => uplink.control.some((m) => m.type === FrameType.PeerRemoved) || undefined,
    );
    // Revoked stays revoked: the same identity is refused until `node admit`.
    await assert.rejects(
      provision(server, String(created.joinToken), "remote-node"),
      (error: ConnectError) =>
        error.code === Code.PermissionDenied &&
        /node admit edge remote-node/.test(error.rawMessage),
    );
    assert.deepEqual(
      json(await relayCli(["node", "admit", "edge", "remote-node", "--json", ...remote], env)),
      { admitted: 1 },
    );
    const notRevoked = await relayCli(["node", "admit", "edge", "remote-node", ...remote], env);
    assert.notEqual(notRevoked.code, 0);
    assert.match(notRevoked.stderr, /is not revoked/);
    await provision(server, String(created.joinToken), "remote-node");

    assert.equal(
      json(
        await relayCli(
          ["token", "revoke", "edge", String(created.joinToken), "--json", ...remote],
          env,
        ),
      ).revoked,
      created.joinToken,
    );
    await assert.rejects(
      provision(server, String(created.joinToken)),
      (error: ConnectError) => error.code === Code.PermissionDenied,
    );

    const metrics = await fetch(`${server.url}/metrics`, {
      headers: { authorization: "Bearer operator-test-token" },
    });
    assert.equal(metrics.status, 200);
    const text = await metrics.text();
    assert.match(text, /^siderolink_relay_connections\{network="edge",role="uplink"\} 1$/m);
    assert.match(text, /^siderolink_relay_provisions_total\{code="ok"\} 3$/m);
    assert.match(text, /^siderolink_relay_provisions_total\{code="permission_denied"\} 2$/m);
    assert.match(text, /^siderolink_relay_drops_total\{network="edge",reason="queue_full"\} 0$/m);
    assert.equal((await fetch(`${server.url}/metrics`)).status, 401);
    const perNetwork = await fetch(`${server.url}/v1/networks/edge/metrics`, {
      headers: { authorization: `Bearer ${created.adminSecret}` },
    });
    assert.equal(perNetwork.status, 200);
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  });
});

describe("processes", () => {
  async function started(child: ChildProcess, pattern: RegExp): Promise<string> {
    let output = "";
    child.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    return eventually(
      `output matching ${pattern}`,
      () => (pattern.test(output) ? output : undefined),
      10_000,
    );
  }

  function exited(child: ChildProcess): Promise<number | null> {
    return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  }

  test("npm start creates the default network, prints the sidecar commands, and stops cleanly on SIGTERM", async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const env = {
      ...process.env,
      SIDEROLINK_RELAY_DATA: dir.path,
      SIDEROLINK_RELAY_LISTEN: "127.0.0.1:0",
    };
    const child = spawn(NODE, [join(ROOT, "relay/start.ts")], { env });
    cleanups.push(() => child.kill("SIGKILL"));
    const output = await started(child, /Ctrl-C stops the relay/);
    assert.match(output, /network "default" created/);
    const token = /join token: +(default\.\S+)/.exec(output)?.[1];
    assert.ok(token, output);
    assert.match(
      output,
      new RegExp(
        `siderolink-sidecar join 'grpc://127\\.0\\.0\\.1:\\d+\\?jointoken=${token.replace(".", "\\.")}&grpc_tunnel=true'`,
      ),
    );
    assert.match(
      output,
      /siderolink-sidecar serve --relay http:\/\/127\.0\.0\.1:\d+ --network default --admin-secret "\$\(cat .*default\.admin-secret\)"/,
    );
    const code = exited(child);
    child.kill("SIGTERM");
    assert.equal(await code, 0);

    const again = spawn(NODE, [join(ROOT, "relay/start.ts")], { env });
    cleanups.push(() => again.kill("SIGKILL"));
    const second = await started(again, /Ctrl-C stops the relay/);
    assert.match(second, /network "default" ready/);
    assert.ok(second.includes(token), "the same join token after a restart");
    const code2 = exited(again);
    again.kill("SIGINT");
    assert.equal(await code2, 0);
  });
});
