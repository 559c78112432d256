/** siderolink-relay and npm start as child processes, against a data dir and a running relay. */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import tls from "node:tls";
import { promisify } from "node:util";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { RelayServer } from "../../relay/node/server.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseNetworkPrefix } from "../../shared/net/ip.ts";
import { encodeHello } from "../../shared/tunnel/encode.ts";
import { CloseCode, FrameType, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";
import { makeCertificates } from "../support/certificates.ts";
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

const provision = (
  server: RelayServer,
  joinToken: string,
  nodeUuid = "00000000-0000-4000-8000-00000000c11e",
) =>
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

  test("network create/show --json (secrets only at creation), and a revoked token stops provisioning", async () => {
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
      [shown.name, shown.apiUrl, shown.joinToken, shown.adminSecret, shown.prefix],
      [created.name, "grpc://127.0.0.1:8787", null, null, created.prefix],
    );
    const shownText = await relayCli(["network", "show", "lab", ...data]);
    assert.match(
      shownText.stdout,
      /shown once, at creation; a new join token: siderolink-relay token create lab/,
    );
    assert.ok(!shownText.stdout.includes(String(created.adminSecret)));
    const again = await relayCli(["network", "create", "lab", ...data]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /network "lab" already exists/);
    const missing = await relayCli(["network", "show", "nope", ...data]);
    assert.match(
      missing.stderr,
      /network "nope" does not exist; create it with: siderolink-relay network create nope/,
    );

    const second = json(await relayCli(["token", "create", "lab", "--json", ...data]));
    assert.match(String(second.joinToken), /^lab\.[A-Za-z0-9_-]{43}$/);
    const listed = json(await relayCli(["token", "list", "lab", "--json", ...data])) as {
      tokens: { id: string; joinToken: unknown }[];
    };
    assert.equal(listed.tokens.length, 2);
    assert.deepEqual(
      listed.tokens.map((t) => t.joinToken),
      [null, null],
      "listings show no secrets",
    );
    const first = listed.tokens.find((t) => t.id !== second.id)!;
    assert.equal(
      json(await relayCli(["token", "revoke", "lab", first.id, "--json", ...data])).revoked,
      first.id,
    );

    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const uplink = new Uplink(server, "lab", String(created.uplinkSecret));
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
      ["00000000-0000-4000-8000-00000000c11e"],
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
    assert.match(String(created.adminSecret), /^[A-Za-z0-9_-]{43}$/);
    const shown = json(await relayCli(["network", "show", "edge", "--json", ...remote], env));
    assert.equal(shown.adminSecret, null);

    const uplink = new Uplink(server, "edge", String(created.uplinkSecret));
    cleanups.push(() => uplink.close());
    await uplink.ready();

    const assigned = `${String(shown.prefix).replace(/::\/64$/, "")}::beef`;
    json(
      await relayCli(
        [
          "node",
          "assign",
          "edge",
          "00000000-0000-4000-8000-0000000f1bed",
          assigned,
          "--json",
          ...remote,
        ],
        env,
      ),
    );
    const outside = await relayCli(
      ["node", "assign", "edge", "00000000-0000-4000-8000-0000000f1bed", "fd00::5", ...remote],
      env,
    );
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /HTTP 400: address fd00::5 is not a node address of network edge/);
    const fixed = await provision(
      server,
      String(created.joinToken),
      "00000000-0000-4000-8000-0000000f1bed",
    );
    assert.equal(fixed.nodeAddressPrefix, `${assigned}/64`);

    const reply = await provision(
      server,
      String(created.joinToken),
      "00000000-0000-4000-8000-0000000e307e",
    );
    const stream = new NodeStream(server, "edge", reply.grpcPeerAddrPort);
    cleanups.push(() => stream.close());
    await stream.opened;
    const runtime = await server.directory.runtime("edge");
    await eventually("the node stream", () => runtime.hub.nodeCount === 1 || undefined);

    const revoked = json(
      await relayCli(
        ["node", "revoke", "edge", "00000000-0000-4000-8000-0000000e307e", "--json", ...remote],
        env,
      ),
    ) as {
      revoked: { nodeUuid: string }[];
    };
    assert.deepEqual(
      revoked.revoked.map((n) => n.nodeUuid),
      ["00000000-0000-4000-8000-0000000e307e"],
    );
    assert.equal((await stream.waitClosed()).code, CloseCode.PeerRemoved);
    await eventually(
      "PEER_REMOVED at the uplink",
      () => uplink.control.some((m) => m.type === FrameType.PeerRemoved) || undefined,
    );
    // Revoked stays revoked: the same identity is refused until `node admit`.
    await assert.rejects(
      provision(server, String(created.joinToken), "00000000-0000-4000-8000-0000000e307e"),
      (error: ConnectError) =>
        error.code === Code.PermissionDenied &&
        /node admit edge 00000000-0000-4000-8000-0000000e307e/.test(error.rawMessage),
    );
    assert.deepEqual(
      json(
        await relayCli(
          ["node", "admit", "edge", "00000000-0000-4000-8000-0000000e307e", "--json", ...remote],
          env,
        ),
      ),
      {
        admitted: {
          nodeUuid: "00000000-0000-4000-8000-0000000e307e",
          revocationsLifted: 1,
          rebindAllowed: false,
        },
      },
    );
    const notRevoked = await relayCli(
      ["node", "admit", "edge", "00000000-0000-4000-8000-0000000e307e", ...remote],
      env,
    );
    assert.notEqual(notRevoked.code, 0);
    assert.match(notRevoked.stderr, /neither revoked nor provisioned/);
    await provision(server, String(created.joinToken), "00000000-0000-4000-8000-0000000e307e");

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

describe("the server key pin and the uplink secret", () => {
  test("reset-server-key and uplink-secret: over the admin API with the operator token, and on a data dir", async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const remote = ["--relay", server.url];
    const env = { SIDEROLINK_RELAY_OPERATOR_TOKEN: "operator-test-token" };
    const created = json(await relayCli(["network", "create", "pin", "--json", ...remote], env));
    assert.match(String(created.uplinkSecret), /^[A-Za-z0-9_-]{43}$/);

    const uplink = new Uplink(server, "pin", String(created.uplinkSecret));
    cleanups.push(() => uplink.close());
    await uplink.ready();
    const impostor = new Uplink(server, "pin", String(created.uplinkSecret));
    cleanups.push(() => impostor.close());
    await impostor.opened;
    impostor.send(encodeHello(PROTOCOL_VERSION, impostor.serverKey));
    const refused = await impostor.waitClosed();
    assert.equal(refused.code, CloseCode.ServerKeyMismatch);
    assert.match(refused.reason, /siderolink-relay network reset-server-key pin/);

    const reset = json(
      await relayCli(["network", "reset-server-key", "pin", "--json", ...remote], env),
    );
    assert.equal(reset.serverPublicKey, null);
    assert.equal((await uplink.waitClosed()).code, CloseCode.ServerKeyMismatch);

    const minted = json(
      await relayCli(["network", "uplink-secret", "pin", "--json", ...remote], env),
    );
    assert.match(String(minted.uplinkSecret), /^[A-Za-z0-9_-]{43}$/);
    const stale = new Uplink(server, "pin", String(created.uplinkSecret));
    cleanups.push(() => stale.close());
    assert.equal((await stale.waitClosed()).code, CloseCode.Unauthorized);
    const replacement = new Uplink(server, "pin", String(minted.uplinkSecret));
    cleanups.push(() => replacement.close());
    await replacement.ready();
    const shown = json(await relayCli(["network", "show", "pin", "--json", ...remote], env));
    assert.equal(shown.serverPublicKey, base64(replacement.serverKey), "the new key is pinned");

    // The admin secret resets nothing.
    const byAdmin = await fetch(`${server.url}/v1/networks/pin/server-key`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${String(created.adminSecret)}` },
    });
    assert.equal(byAdmin.status, 401);
    await server.close();

    // On the data dir, with the relay stopped.
    const local = await relayCli(["network", "uplink-secret", "pin", "--data", dir.path]);
    assert.equal(local.code, 0, local.stderr);
    assert.match(local.stdout, /^[A-Za-z0-9_-]{43}\n/);
    const cleared = await relayCli(["network", "reset-server-key", "pin", "--data", dir.path]);
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.match(cleared.stdout, /pin: server key pin cleared/);
    const again = json(await relayCli(["network", "show", "pin", "--json", "--data", dir.path]));
    assert.equal(again.serverPublicKey, null);
  });
});

describe("network create --omni-prefix", () => {
  // NetworkPrefix("") as SideroLink's agent and Omni compute it (an empty installation id):
  // siderolabs/siderolink pkg/wireguard/address.go, the known answer in ARCHITECTURE.md.
  const OMNI_PREFIX = "fdae:41e4:649b:9303::/64";
  const OMNI_SERVER = "fdae:41e4:649b:9303::1";

  test("on a data dir: the Omni prefix with the server at ::1; without the flag a prefix of its own", async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const data = ["--data", dir.path];
    const omni = json(
      await relayCli(["network", "create", "omni", "--omni-prefix", "--json", ...data]),
    );
    assert.equal(omni.prefix, OMNI_PREFIX);
    assert.equal(omni.serverAddress, OMNI_SERVER);
    const own = json(await relayCli(["network", "create", "own", "--json", ...data]));
    assert.notEqual(own.prefix, OMNI_PREFIX);
    const ownPrefix = parseNetworkPrefix(String(own.prefix));
    assert.deepEqual(
      [ownPrefix.address[0], ownPrefix.address[7], ownPrefix.bits],
      [0xfd, 0x03, 64],
    );
    const misplaced = await relayCli(["network", "show", "omni", "--omni-prefix", ...data]);
    assert.equal(misplaced.code, 2);
    assert.match(misplaced.stderr, /--omni-prefix goes with network create/);

    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const uplink = new Uplink(server, "omni", String(omni.uplinkSecret));
    cleanups.push(() => uplink.close());
    await uplink.ready();
    const reply = await provision(
      server,
      String(omni.joinToken),
      "00000000-0000-4000-8000-0000000000a1",
    );
    assert.equal(reply.serverAddress, OMNI_SERVER);
    assert.ok(reply.nodeAddressPrefix.startsWith("fdae:41e4:649b:9303:"), reply.nodeAddressPrefix);
  });

  test("over the admin API (--relay): omniPrefix in the body, a non-boolean refused", async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const env = { SIDEROLINK_RELAY_OPERATOR_TOKEN: "operator-test-token" };
    const created = json(
      await relayCli(
        ["network", "create", "omni", "--omni-prefix", "--json", "--relay", server.url],
        env,
      ),
    );
    assert.equal(created.prefix, OMNI_PREFIX);
    assert.equal(created.serverAddress, OMNI_SERVER);
    const bad = await fetch(`${server.url}/v1/networks`, {
      method: "POST",
      headers: { authorization: "Bearer operator-test-token", "content-type": "application/json" },
      body: JSON.stringify({ name: "other", omniPrefix: "yes" }),
    });
    assert.equal(bad.status, 400);
    assert.match(
      ((await bad.json()) as { error: string }).error,
      /"omniPrefix" must be true or false, got "yes"/,
    );
  });
});

describe("siderolink-relay serve settings", () => {
  test("a limit flag or variable that is not a plain number stops serve, naming it", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const flag = await relayCli(["serve", "--data", dir.path, "--liveness-timeout-ms", "45s"]);
    assert.equal(flag.code, 2);
    assert.match(
      flag.stderr,
      /--liveness-timeout-ms="45s" is not valid: expected a whole number of milliseconds >= 1000/,
    );
    const env = await relayCli(["serve", "--data", dir.path], {
      SIDEROLINK_RELAY_NODE_DATAGRAMS_PER_SECOND: "lots",
    });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /SIDEROLINK_RELAY_NODE_DATAGRAMS_PER_SECOND="lots" is not valid/);
  });
});

describe("siderolink-relay --relay URL when the relay cannot be reached", () => {
  const operator = { SIDEROLINK_RELAY_OPERATOR_TOKEN: "operator-test-token" };

  test("a refused port: the cause and what to check, not just 'fetch failed'", async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await relayCli(
      ["--relay", `http://127.0.0.1:${port}`, "network", "list"],
      operator,
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ECONNREFUSED/);
    assert.match(result.stderr, new RegExp(`nothing listens on 127\\.0\\.0\\.1:${port}`));
  });

  test("https:// to a relay that serves plain HTTP: a TLS error and the hint to use http://", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const server = await startRelay(dir.path);
    cleanups.push(() => server.close());
    const result = await relayCli(
      ["--relay", server.url.replace("http://", "https://"), "network", "list"],
      operator,
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /SSL|TLS|wrong version number|packet length/i);
    assert.match(result.stderr, /may serve plain HTTP here; try http:\/\//);
  });

  test("http:// to a relay that serves TLS: the closed connection and the hint to use https://", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const certificates = makeCertificates(dir.path, ["127.0.0.1"]);
    const server = tls.createServer({
      cert: readFileSync(certificates.cert),
      key: readFileSync(certificates.key),
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => server.close());
    const { port } = server.address() as net.AddressInfo;
    const result = await relayCli(
      ["--relay", `http://127.0.0.1:${port}`, "network", "list"],
      operator,
    );
    assert.equal(result.code, 1);
    assert.doesNotMatch(result.stderr, /: fetch failed\n$/);
    assert.match(result.stderr, /if the relay serves TLS, use https:\/\//);
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

  test("npm start creates the default network, prints the sidecar commands with no secret in them, and stops cleanly on SIGTERM", async () => {
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
    const secretFile = join(dir.path, "default.admin-secret");
    const uplinkSecretFile = join(dir.path, "default.uplink-secret");
    const serveLine = output.split("\n").find((line) => line.includes("siderolink-sidecar serve"));
    assert.equal(
      serveLine?.trim(),
      `siderolink-sidecar serve --relay ${/listening on (\S+)/.exec(output)?.[1]} --network default --uplink-secret-file ${uplinkSecretFile}`,
    );
    assert.equal(statSync(secretFile).mode & 0o777, 0o600);
    assert.equal(statSync(uplinkSecretFile).mode & 0o777, 0o600);
    const adminSecret = readFileSync(secretFile, "utf8").trim();
    const uplinkSecret = readFileSync(uplinkSecretFile, "utf8").trim();
    assert.match(adminSecret, /^[A-Za-z0-9_-]{43}$/);
    assert.match(uplinkSecret, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(uplinkSecret, adminSecret);
    assert.ok(!output.includes(adminSecret), "the admin secret is not printed");
    assert.ok(!output.includes(uplinkSecret), "the uplink secret is not printed");
    const code = exited(child);
    child.kill("SIGTERM");
    assert.equal(await code, 0);

    const again = spawn(NODE, [join(ROOT, "relay/start.ts")], { env });
    cleanups.push(() => again.kill("SIGKILL"));
    const second = await started(again, /Ctrl-C stops the relay/);
    assert.match(second, /network "default" ready/);
    assert.ok(!second.includes(token), "the join token is shown only at creation");
    assert.match(
      second,
      /join token: +shown when the network was created; a new one: siderolink-relay token create default/,
    );
    assert.ok(second.includes(`admin secret: in ${secretFile}`), second);
    assert.equal(readFileSync(secretFile, "utf8").trim(), adminSecret, "the secret file is kept");
    const code2 = exited(again);
    again.kill("SIGINT");
    assert.equal(await code2, 0);
  });
});
