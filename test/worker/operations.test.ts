/**
 * Operating the Worker relay, in real workerd: counters that survive an eviction, refusals
 * counted where no network's object keeps them, configuration checked at the first request,
 * answers that name Workers' own settings, the API URL under `wrangler dev`, per-/64 Provision
 * budgets, and logs without secrets or virtual addresses.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { adminCall, randomKey, uniqueNetworkName } from "./support/clients.ts";
import { nodeFrame, peerFrame, wireguardMessage } from "./support/frames.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";
import { startTestNetwork, type TestNetwork } from "./support/network.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

const relays: WorkerRelay[] = [];
const networks: TestNetwork[] = [];
let relay: WorkerRelay;

before(async () => {
  relay = await startWorkerRelay();
  relays.push(relay);
});

after(async () => {
  for (const network of networks) network.close();
  for (const started of relays) {
    await started.stop().catch(() => {});
    await removePersistDirectory(started);
  }
});

/** Provision over Connect JSON from `client` (the edge's CF-Connecting-IP, when given). */
async function provisionJson(
  base: URL,
  joinToken: string,
  client?: string,
): Promise<{ code?: string; message?: string; grpcPeerAddrPort?: string }> {
  const response = await fetch(new URL(PROVISION_PATH, base), {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(client === undefined ? {} : { "cf-connecting-ip": client }),
    },
    body: JSON.stringify({ nodeUuid: crypto.randomUUID(), nodePublicKey: randomKey(), joinToken }),
  });
  return (await response.json()) as { code?: string; message?: string };
}

/** The samples of one family in Prometheus text, by their series text. */
function samples(text: string, family: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${family}{`)) continue;
    const space = line.lastIndexOf(" ");
    found.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return found;
}

async function metricsText(base: URL, path: string, token: string): Promise<string> {
  const response = await fetch(new URL(path, base), {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200, `${path}: ${response.status}`);
  return response.text();
}

test("a network's *_total counters survive an eviction of its object", async () => {
  const net = await startTestNetwork(relay.url, relay.operatorToken);
  networks.push(net);
  const node = await net.provisionNode();
  const stream = await net.connect(node);
  stream.send(nodeFrame([wireguardMessage(4), wireguardMessage(4, 64)]));
  await net.uplink.nextDatagrams();
  net.uplink.socket.send(peerFrame([[node.tag, wireguardMessage(4)]]));
  await stream.nextBinary("a datagram from the uplink");
  const { name, adminSecret } = net.network;
  const path = `/v1/networks/${name}/metrics`;
  const before = await metricsText(relay.url, path, adminSecret);
  const totals = (text: string) =>
    new Map(
      [...samples(text, "siderolink_relay_datagrams_total")]
        .concat([...samples(text, "siderolink_relay_bytes_total")])
        .concat([...samples(text, "siderolink_relay_provisions_total")])
        .concat([...samples(text, "siderolink_relay_peer_acks_total")]),
    );
  const counted = totals(before);
  assert.equal(
    counted.get(`siderolink_relay_datagrams_total{network="${name}",direction="node_to_uplink"}`),
    2,
  );
  assert.equal(counted.get('siderolink_relay_provisions_total{code="ok"}'), 1);

  await relay.evictNetwork(name);
  const after = totals(await metricsText(relay.url, path, adminSecret));
  assert.deepEqual(after, counted, "counters after the eviction");
});

test("Provision refusals that reach no existing network's object are counted: 8 of 8", async () => {
  const fresh = await startWorkerRelay();
  relays.push(fresh);
  const net = await startTestNetwork(fresh.url, fresh.operatorToken);
  networks.push(net);
  const { name } = net.network;
  const refusals = [
    `${name}.wrong-secret`,
    `${name}.another-wrong-secret`,
    `${uniqueNetworkName("guess")}.secret`,
    `${uniqueNetworkName("guess")}.secret`,
    `${uniqueNetworkName("guess")}.secret`,
    "no-dot-at-all",
    "",
    "Not A Network.secret",
  ];
  for (const token of refusals) {
    assert.equal((await provisionJson(fresh.url, token)).code, "permission_denied", token);
  }
  const text = await metricsText(fresh.url, "/metrics", fresh.operatorToken);
  assert.equal(
    samples(text, "siderolink_relay_provisions_total").get(
      'siderolink_relay_provisions_total{code="permission_denied"}',
    ),
    refusals.length,
    text,
  );
});

test("a wrong Worker var: /healthz and every route answer 503 JSON naming it", async () => {
  const broken = await startWorkerRelay({ vars: { RELAY_LIVENESS_TIMEOUT_MS: "45s" } });
  relays.push(broken);
  for (const [method, path] of [
    ["GET", "/healthz"],
    ["GET", "/v1/networks"],
    ["GET", "/v1/networks/some-net/tokens"],
    ["POST", PROVISION_PATH],
  ] as const) {
    const response = await fetch(new URL(path, broken.url), {
      method,
      headers: { authorization: `Bearer ${broken.operatorToken}` },
    });
    assert.equal(response.status, 503, `${method} ${path}`);
    assert.match(response.headers.get("content-type") ?? "", /application\/json/);
    const body = (await response.json()) as Record<string, string>;
    assert.equal(body.setting, "RELAY_LIVENESS_TIMEOUT_MS");
    assert.equal(body.value, "45s");
    assert.match(
      body.error,
      /RELAY_LIVENESS_TIMEOUT_MS="45s" is not valid: expected a whole number of milliseconds >= 1000/,
    );
  }
});

test("limits come from Worker vars: the liveness close reason states the configured limit", async () => {
  const configured = await startWorkerRelay({
    vars: { RELAY_LIVENESS_TIMEOUT_MS: "1500", RELAY_MAX_TUNNELS: "1" },
  });
  relays.push(configured);
  const net = await startTestNetwork(configured.url, configured.operatorToken);
  networks.push(net);
  const first = await net.connect(await net.provisionNode());
  const second = await net.connect(await net.provisionNode());
  await second.wantClosed(1013, /limit of 1 tunnels/);
  await first.wantClosed(4408, /\(limit 1\.5 s\)/);
});

test("without an operator token the admin API says how to set one on Workers", async () => {
  const bare = await startWorkerRelay({ operatorToken: null });
  relays.push(bare);
  const { status, json } = await adminCall(bare.url, "anything", "GET", "/v1/networks");
  assert.equal(status, 403);
  assert.match(String(json.error), /wrangler secret put RELAY_OPERATOR_TOKEN/);
  assert.match(String(json.error), /\.dev\.vars/);
  assert.doesNotMatch(String(json.error), /SIDEROLINK_RELAY_OPERATOR_TOKEN/);
});

test("reached over plain HTTP on loopback (wrangler dev), the API URL and join command work there", async () => {
  const { status, json } = await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", {
    name: uniqueNetworkName(),
  });
  assert.equal(status, 201);
  const api = parseApiUrl(String(json.apiUrl));
  assert.equal(api.origin, relay.url.origin, "the sidecar dials the address wrangler dev serves");
  assert.equal(api.tls, false);
  assert.equal(
    json.joinCommand,
    `siderolink-sidecar join '${json.apiUrl}' --provision-protocol connect --transport websocket`,
  );
});

test("Provision budgets are per IPv6 /64, and a stranger's refusals leave valid calls alone", async () => {
  const net = await startTestNetwork(relay.url, relay.operatorToken);
  networks.push(net);
  const wrong = `${net.network.name}.wrong`;
  const codes: (string | undefined)[] = [];
  // Two addresses of one /64 share the refusal budget (10 by default).
  for (let i = 0; i < 6; i++)
    codes.push((await provisionJson(relay.url, wrong, "2001:db8:1:2::a")).code);
  for (let i = 0; i < 6; i++)
    codes.push((await provisionJson(relay.url, wrong, "2001:db8:1:2::b")).code);
  assert.deepEqual(codes.slice(0, 10), Array(10).fill("permission_denied"));
  assert.deepEqual(codes.slice(10), ["resource_exhausted", "resource_exhausted"]);
  const limited = await provisionJson(relay.url, wrong, "2001:db8:1:2::c");
  assert.match(limited.message ?? "", /from client 2001:db8:1:2::\/64;/);
  // The next /64 has its own budget.
  assert.equal(
    (await provisionJson(relay.url, wrong, "2001:db8:1:3::a")).code,
    "permission_denied",
  );
  // A real node in the exhausted /64 still provisions.
  const uplinkReady = net.uplink;
  const [answer] = await Promise.all([
    provisionJson(relay.url, net.network.joinToken, "2001:db8:1:2::d"),
    uplinkReady.nextEvent(),
  ]);
  assert.ok(answer.grpcPeerAddrPort, JSON.stringify(answer));
});

test("the Worker logs provisions and streams as objects, without secrets or virtual addresses", async () => {
  const logged = await startWorkerRelay();
  relays.push(logged);
  const net = await startTestNetwork(logged.url, logged.operatorToken);
  networks.push(net);
  const node = await net.provisionNode();
  const stream = await net.connect(node);
  stream.send(new Uint8Array([0x7f]));
  await stream.wantClosed(1007);
  assert.equal(
    (await provisionJson(logged.url, `${net.network.name}.wrong-secret-value`)).code,
    "permission_denied",
  );
  const output = logged.logs.join("\n");
  for (const event of ["provision", "stream_open", "stream_close", "uplink_hello"]) {
    assert.match(output, new RegExp(`event: '${event}'`), `a ${event} record`);
  }
  assert.match(output, /result: 'permission_denied'/);
  assert.match(output, /code: 1007/);
  const virtualAddress = node.peerAddrPort.slice(1, node.peerAddrPort.lastIndexOf("]"));
  const secrets = [
    logged.operatorToken,
    net.network.adminSecret,
    net.network.joinToken.split(".")[1],
    "wrong-secret-value",
    virtualAddress,
  ];
  for (const secret of secrets) {
    assert.ok(!output.includes(secret), `the Worker's log holds ${secret}:\n${output}`);
  }
});
