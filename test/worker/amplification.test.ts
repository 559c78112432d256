/**
 * Requests that name networks which do not exist, in real workerd: they wake no network's
 * Durable Object (each object ever constructed leaves a database file, which the test counts),
 * are refused as before and counted; and POST /v1/networks is refused before its body is read
 * when it lacks the operator token or is too large, with a body that never ends.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import {
  adminCall,
  createNetwork,
  openNodeStream,
  randomKey,
  TestUplink,
  uniqueNetworkName,
  WAIT_MS,
} from "./support/clients.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";
const FLOOD = 24;
const BODY_CHUNK_EVERY_MS = 5;

let relay: WorkerRelay;

before(async () => {
  relay = await startWorkerRelay();
});

after(async () => {
  await relay?.stop();
  if (relay) await removePersistDirectory(relay);
});

/** One Prometheus sample's value from the relay-wide /metrics, 0 when absent. */
async function sample(series: string): Promise<number> {
  const response = await fetch(new URL("/metrics", relay.url), {
    headers: { authorization: `Bearer ${relay.operatorToken}` },
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

/** Everything one guess of a network name tries, each answered as for a missing network. */
async function guess(name: string): Promise<void> {
  const provision = await fetch(new URL(PROVISION_PATH, relay.url), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      nodeUuid: randomUUID(),
      nodePublicKey: randomKey(),
      joinToken: `${name}.${"a".repeat(43)}`,
    }),
  });
  assert.equal(((await provision.json()) as { code?: string }).code, "permission_denied");
  const tunnel = openNodeStream(relay.url, name, "[fdae:41e4:649b:9304::1]:50888");
  await tunnel.wantClosed(CloseCode.PeerNotAllowed, "peer not allowed");
  const uplink = new TestUplink(relay.url, name, "a".repeat(43));
  await uplink.socket.wantClosed(CloseCode.Unauthorized, /invalid uplink secret/);
  const shown = await adminCall(relay.url, relay.operatorToken, "GET", `/v1/networks/${name}`);
  assert.equal(shown.status, 404, JSON.stringify(shown.json));
  assert.match(String(shown.json.error), /does not exist/);
  const nodes = await adminCall(relay.url, "guess", "GET", `/v1/networks/${name}/nodes`);
  assert.equal(nodes.status, 401);
}

test("a flood of unknown network names wakes no network object, is refused as before and counted", async () => {
  const real = await createNetwork(relay.url, relay.operatorToken, uniqueNetworkName("real"));
  const objects = await relay.networkObjectCount();
  assert.equal(objects, 1, "the created network's object");
  const deniedBefore = await sample('siderolink_relay_provisions_total{code="permission_denied"}');

  const names = Array.from({ length: FLOOD }, () => uniqueNetworkName("guess"));
  await Promise.all(names.map(guess));

  assert.equal(await relay.networkObjectCount(), objects, "objects woken by unknown names");
  const listed = await adminCall(relay.url, relay.operatorToken, "GET", "/v1/networks");
  assert.deepEqual(listed.json.networks, [real.name]);
  assert.equal(
    await sample('siderolink_relay_provisions_total{code="permission_denied"}'),
    deniedBefore + FLOOD,
  );
  for (const route of ["tunnel", "uplink", "admin"]) {
    assert.equal(
      await sample(`siderolink_relay_unknown_network_requests_total{route="${route}"}`),
      route === "admin" ? 2 * FLOOD : FLOOD,
      route,
    );
  }
});

/**
 * POSTs /v1/networks with `headers` and a body that never ends: a chunk every BODY_CHUNK_EVERY_MS
 * (chunked, or under a declared Content-Length it never reaches) until the answer comes. On a
 * plain socket, paced so that the relay has read what came when it answers and closes (a
 * socket closed with unread bytes is reset, and the reset would discard the answer).
 */
function postEndless(headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(relay.url.port), relay.url.hostname);
    const chunked = !Object.keys(headers).some((name) => name.toLowerCase() === "content-length");
    const lines = [
      "POST /v1/networks HTTP/1.1",
      `host: ${relay.url.host}`,
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      ...(chunked ? ["transfer-encoding: chunked"] : []),
    ];
    const data = Buffer.from(`{"name":"${"x".repeat(1024)}`);
    const chunk = chunked
      ? Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from("\r\n")])
      : data;
    let received = "";
    let answer: { status: number; body: string } | undefined;
    const timer = setTimeout(() => {
      clearInterval(pump);
      socket.destroy();
      reject(new Error(`no answer within ${WAIT_MS} ms while the body was still coming`));
    }, WAIT_MS);
    const finish = (): void => {
      clearTimeout(timer);
      clearInterval(pump);
      socket.destroy();
      if (answer) resolve(answer);
      else reject(new Error(`the connection ended without an answer: ${JSON.stringify(received)}`));
    };
    const pump = setInterval(() => {
      if (answer || socket.destroyed) clearInterval(pump);
      else socket.write(chunk);
    }, BODY_CHUNK_EVERY_MS);
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => {
      received += text;
      const head = received.indexOf("\r\n\r\n");
      if (head < 0) return;
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1] ?? 0);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(received.slice(0, head))?.[1]);
      const body = received.slice(head + 4);
      if (Number.isNaN(length) || body.length < length) return;
      answer = { status, body: body.slice(0, length) };
      finish();
    });
    // Writing into a connection the relay closed after answering: the answer is what counts.
    socket.on("error", () => {});
    socket.on("close", () => {
      if (!answer) finish();
    });
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
  });
}

test("POST /v1/networks without the operator token is refused before its body is read", async () => {
  for (const authorization of [undefined, "Bearer wrong-token"]) {
    const answer = await postEndless({
      "content-type": "application/json",
      ...(authorization ? { authorization } : {}),
    });
    assert.equal(answer.status, 401, answer.body);
    assert.match(answer.body, /operator token/);
  }
});

test("an oversized POST /v1/networks is refused by its Content-Length before its body is read, and one without a length once it passes the bound", async () => {
  const operator = {
    "content-type": "application/json",
    authorization: `Bearer ${relay.operatorToken}`,
  };
  const declared = await postEndless({ ...operator, "content-length": String(64 * 1024 * 1024) });
  assert.equal(declared.status, 413, declared.body);
  assert.match(declared.body, /at most \d+ bytes/);
  const chunked = await postEndless(operator);
  assert.equal(chunked.status, 413, chunked.body);
  const listed = await adminCall(relay.url, relay.operatorToken, "GET", "/v1/networks");
  assert.equal(listed.status, 200);
});
