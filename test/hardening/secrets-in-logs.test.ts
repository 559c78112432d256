/**
 * The relay never logs a secret: a relay process is driven through its successes and its error
 * paths (wrong secrets, revocations, malformed frames, a locked store), and everything it wrote
 * to stdout and stderr is searched for every secret it handled and the virtual address of the
 * node it served. What it does log are structured records, one JSON object per line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, test } from "node:test";
import type { RelayServer } from "../../relay/node/server.ts";
import { DATABASE_FILE } from "../../relay/node/sqlite.ts";
import { base64, NodeStream, randomKey, tempDir, Uplink } from "../relay/helpers.ts";
import { postJson } from "./soak.ts";
import { RelayProcess } from "./support/relay-process.ts";

const OPERATOR_TOKEN = `operator-${crypto.randomUUID()}`;
const dir = tempDir();
const sockets: { close(): void }[] = [];
let relay: RelayProcess | undefined;

after(async () => {
  for (const socket of sockets) socket.close();
  await relay?.stop();
  dir.remove();
});

test("a relay's output holds none of the secrets it handled, on success and on error", async () => {
  relay = await RelayProcess.start({
    dataDir: dir.path,
    network: "quiet",
    operatorToken: OPERATOR_TOKEN,
    storeBusyTimeoutMs: 100,
  });
  const network = relay.network!;
  const server = { url: relay.url } as RelayServer;
  const secrets = [
    OPERATOR_TOKEN,
    network.adminSecret,
    network.uplinkSecret,
    network.joinToken!.split(".")[1],
  ];
  const call = async (method: string, path: string, token: string) => {
    const response = await fetch(`${relay!.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: method === "GET" ? undefined : JSON.stringify({ name: "other" }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  const uplink = new Uplink(server, "quiet", network.uplinkSecret);
  sockets.push(uplink);
  await uplink.ready();
  const wrongUplink = new Uplink(server, "quiet", `${network.uplinkSecret}x`);
  sockets.push(wrongUplink);
  await wrongUplink.waitClosed();

  const provision = (joinToken: string, nodeUuid = crypto.randomUUID()) =>
    postJson(relay!.port, "/sidero.link.ProvisionService/Provision", {
      nodeUuid,
      nodePublicKey: base64(randomKey()),
      joinToken,
    }) as Promise<{ grpcPeerAddrPort?: string; code?: string }>;
  const nodeUuid = crypto.randomUUID();
  const reply = await provision(network.joinToken!, nodeUuid);
  assert.ok(reply.grpcPeerAddrPort);
  assert.equal((await provision(`${network.joinToken}x`)).code, "permission_denied");

  const stream = new NodeStream(server, "quiet", reply.grpcPeerAddrPort!);
  sockets.push(stream);
  await stream.opened;
  stream.send(new Uint8Array([0x7f]));
  await stream.waitClosed();

  const other = await call("POST", "/v1/networks", OPERATOR_TOKEN);
  assert.equal(other.status, 201);
  secrets.push(String(other.body.adminSecret), String(other.body.joinToken).split(".")[1]);
  const token = await call("POST", "/v1/networks/quiet/tokens", network.adminSecret);
  secrets.push(String(token.body.joinToken).split(".")[1]);
  assert.equal(
    (await call("DELETE", `/v1/networks/quiet/tokens/${token.body.id}`, OPERATOR_TOKEN)).status,
    200,
  );
  assert.equal(
    (await call("DELETE", `/v1/networks/quiet/nodes/${nodeUuid}`, network.adminSecret)).status,
    200,
  );
  assert.equal((await call("GET", "/v1/networks/quiet/nodes", `${OPERATOR_TOKEN}x`)).status, 401);

  // An error the relay does log: the store locked while an admin call writes.
  const lock = new DatabaseSync(join(dir.path, DATABASE_FILE));
  lock.exec("BEGIN EXCLUSIVE");
  try {
    assert.equal(
      (await call("POST", "/v1/networks/quiet/tokens", network.adminSecret)).status,
      503,
    );
  } finally {
    lock.exec("ROLLBACK");
    lock.close();
  }

  await relay.stop();
  const output = relay.log.join("");
  assert.match(output, /locked by another process/, "the relay logged the store error");
  const records = output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  const has = (fields: Record<string, unknown>) =>
    records.some((record) => Object.entries(fields).every(([key, value]) => record[key] === value));
  assert.ok(has({ event: "provision", result: "ok", network: "quiet", node: nodeUuid }), output);
  assert.ok(has({ event: "provision", result: "permission_denied", network: "quiet" }), output);
  assert.ok(has({ event: "stream_open", role: "node", network: "quiet" }), output);
  assert.ok(has({ event: "stream_close", role: "node", by: "relay", code: 1007 }), output);
  assert.ok(has({ event: "stream_open", role: "uplink" }), output);
  assert.ok(has({ event: "stream_refused", role: "uplink", code: 4401 }), output);
  assert.ok(has({ event: "uplink_hello", network: "quiet" }), output);
  const virtualAddress = reply.grpcPeerAddrPort!.slice(1, reply.grpcPeerAddrPort!.lastIndexOf("]"));
  assert.ok(
    !output.includes(virtualAddress),
    `the relay's output holds the virtual address:\n${output}`,
  );
  for (const secret of secrets) {
    assert.ok(secret.length >= 20, "a real secret to look for");
    assert.ok(!output.includes(secret), `the relay's output contains a secret:\n${output}`);
  }
});
