/**
 * The admin API on the Worker: operator routes answered at the edge (listing from the
 * directory object, relay-wide /metrics gathered from every network's object) and network
 * routes answered by the network's object.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import {
  adminCall,
  openNodeStream,
  provisionClient,
  randomKey,
  uniqueNetworkName,
} from "./support/clients.ts";
import { nodeFrame, wireguardMessage } from "./support/frames.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";
import { startTestNetwork, type TestNetwork } from "./support/network.ts";

let relay: WorkerRelay;
const networks: TestNetwork[] = [];

before(async () => {
  relay = await startWorkerRelay();
});

after(async () => {
  for (const network of networks) network.close();
  await relay?.stop();
  if (relay) await removePersistDirectory(relay);
});

test("GET /healthz answers without credentials", async () => {
  const response = await fetch(new URL("/healthz", relay.url));
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "ok");
});

test("networks are created and listed with the operator token only", async () => {
  const name = uniqueNetworkName();
  const refused = await adminCall(relay.url, "wrong", "POST", "/v1/networks", { name });
  assert.equal(refused.status, 401);
  assert.match(String(refused.json.error), /operator token/);

  const created = await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", { name });
  assert.equal(created.status, 201);
  assert.equal(created.json.name, name);
  assert.match(String(created.json.joinToken), new RegExp(`^${name}\\.[A-Za-z0-9_-]{43}$`));

  const again = await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", { name });
  assert.equal(again.status, 409);
  const badName = await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", {
    name: "Bad_Name",
  });
  assert.equal(badName.status, 400);
  assert.match(String(badName.json.error), /Bad_Name/);

  const listed = await adminCall(relay.url, relay.operatorToken, "GET", "/v1/networks");
  assert.equal(listed.status, 200);
  assert.ok((listed.json.networks as string[]).includes(name));
  assert.equal((await adminCall(relay.url, "wrong", "GET", "/v1/networks")).status, 401);
});

test("a network's admin secret opens its own routes and no other network's", async () => {
  const [a, b] = [uniqueNetworkName(), uniqueNetworkName()];
  const netA = await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", { name: a });
  await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", { name: b });
  const secretA = String(netA.json.adminSecret);
  const own = await adminCall(relay.url, secretA, "POST", `/v1/networks/${a}/tokens`);
  assert.equal(own.status, 201);
  assert.match(String(own.json.joinToken), new RegExp(`^${a}\\.`));
  assert.equal(
    (await adminCall(relay.url, secretA, "GET", `/v1/networks/${b}/tokens`)).status,
    401,
  );
  const missing = await adminCall(
    relay.url,
    relay.operatorToken,
    "GET",
    `/v1/networks/${uniqueNetworkName()}`,
  );
  assert.equal(missing.status, 404);
});

test("GET /metrics merges every network's counters", async () => {
  const nets = [
    await startTestNetwork(relay.url, relay.operatorToken),
    await startTestNetwork(relay.url, relay.operatorToken),
  ];
  networks.push(...nets);
  for (const net of nets) {
    const node = await net.provisionNode();
    const stream = await net.connect(node);
    stream.send(nodeFrame([wireguardMessage(4), wireguardMessage(4)]));
    await net.uplink.nextDatagrams();
  }
  const refused = await fetch(new URL("/metrics", relay.url));
  assert.equal(refused.status, 401);
  const response = await fetch(new URL("/metrics", relay.url), {
    headers: { authorization: `Bearer ${relay.operatorToken}` },
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const text = await response.text();
  const lines = text.split("\n");
  for (const net of nets) {
    const name = net.network.name;
    const sample = `siderolink_relay_datagrams_total{network="${name}",direction="node_to_uplink"} 2`;
    assert.ok(lines.includes(sample), `${sample} in\n${text}`);
    assert.ok(lines.includes(`siderolink_relay_connections{network="${name}",role="node"} 1`));
  }
  const families = lines.filter((line) => line.startsWith("# TYPE "));
  assert.equal(new Set(families).size, families.length, "one TYPE line per family");
  const ok = lines.find((line) => line.startsWith('siderolink_relay_provisions_total{code="ok"} '));
  assert.ok(ok, `provisions in\n${text}`);
  assert.equal(
    ok,
    `siderolink_relay_provisions_total{code="ok"} 2`,
    "one provision in each network, summed",
  );
});

test("requests for networks that do not exist wake no network object", async () => {
  const objects = await relay.networkObjectCount();
  const guessed = [uniqueNetworkName(), uniqueNetworkName(), uniqueNetworkName()];
  await assert.rejects(
    provisionClient(relay.url, "grpc-web").provision({
      nodeUuid: randomUUID(),
      nodePublicKey: randomKey(),
      joinToken: `${guessed[0]}.${"a".repeat(43)}`,
    }),
    /invalid join token/,
  );
  const stream = openNodeStream(relay.url, guessed[1], "[fdae:41e4:649b:9304::1]:50888");
  await stream.wantClosed(4403, "peer not allowed");
  const show = await adminCall(relay.url, relay.operatorToken, "GET", `/v1/networks/${guessed[2]}`);
  assert.equal(show.status, 404);
  assert.equal(await relay.networkObjectCount(), objects, "objects woken by the guessed names");

  const created = uniqueNetworkName();
  await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", { name: created });
  assert.ok((await relay.networkTables(created)).includes("peers"));
});
