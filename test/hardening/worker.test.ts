/**
 * The hardening that applies on the Worker runtime, in real workerd: oversized Provision and
 * admin bodies, unknown paths, plain gRPC refused, the per-client Provision rate limit keyed by
 * the edge's CF-Connecting-IP, and the per-stream datagram token bucket. (Frames over the limit
 * and unknown frame types on the Worker: the relay contract, test/contract/.)
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { MAX_ADMIN_BODY_BYTES } from "../../relay/app/app.ts";
import { MAX_PROVISION_REQUEST_BYTES } from "../../relay/app/connect.ts";
import { DEFAULT_RELAY_LIMITS } from "../../relay/app/limits.ts";
import { DEFAULT_HUB_LIMITS } from "../../relay/hub/hub.ts";
import { adminCall, randomKey } from "../worker/support/clients.ts";
import { nodeFrame, wireguardMessage } from "../worker/support/frames.ts";
import {
  removePersistDirectory,
  startWorkerRelay,
  type WorkerRelay,
} from "../worker/support/miniflare.ts";
import { startTestNetwork, type TestNetwork } from "../worker/support/network.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";
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

async function connectJson(body: string, headers: Record<string, string> = {}) {
  const response = await fetch(new URL(PROVISION_PATH, relay.url), {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    body: (await response.json()) as { code?: string; message?: string },
  };
}

test("Provision bodies over the limit are refused with resource_exhausted", async () => {
  const padding = "a".repeat(MAX_PROVISION_REQUEST_BYTES);
  const answer = await connectJson(JSON.stringify({ nodeUuid: padding, joinToken: "x.y" }));
  assert.equal(answer.body.code, "resource_exhausted", JSON.stringify(answer.body));
});

test("unknown paths get 404, admin bodies over the limit 413, plain gRPC UNIMPLEMENTED", async () => {
  const unknown = await fetch(new URL("/no/such/path", relay.url));
  assert.equal(unknown.status, 404);
  await unknown.body?.cancel();
  const big = await adminCall(relay.url, relay.operatorToken, "POST", "/v1/networks", {
    name: "x".repeat(MAX_ADMIN_BODY_BYTES),
  });
  assert.equal(big.status, 413);
  const grpc = await fetch(new URL(PROVISION_PATH, relay.url), {
    method: "POST",
    headers: { "content-type": "application/grpc" },
    body: new Uint8Array(5),
  });
  assert.equal(grpc.headers.get("grpc-status"), "12");
  await grpc.body?.cancel();
});

test("Provision is rate limited per client address (CF-Connecting-IP) with Retry-After", async () => {
  const network = await startTestNetwork(relay.url, relay.operatorToken);
  networks.push(network);
  const wrong = JSON.stringify({
    nodeUuid: crypto.randomUUID(),
    nodePublicKey: randomKey(),
    joinToken: `${network.network.name}.wrong`,
  });
  const burst = DEFAULT_RELAY_LIMITS.provisionFailuresPerClient.burst;
  const headers = { "cf-connecting-ip": "203.0.113.9" };
  for (let i = 0; i < burst; i++) {
    assert.equal((await connectJson(wrong, headers)).body.code, "permission_denied", `call ${i}`);
  }
  const limited = await connectJson(wrong, headers);
  assert.equal(limited.body.code, "resource_exhausted");
  assert.match(
    limited.body.message ?? "",
    /refused Provision calls from client 203\.0\.113\.9; retry in \d+ s/,
  );
  assert.ok(Number(limited.retryAfter) >= 1, `Retry-After ${limited.retryAfter}`);
  // Another address has its own budget, and calls without the edge's header (workerd run
  // locally) share none: they skip the per-client limit.
  const other = await connectJson(wrong, { "cf-connecting-ip": "203.0.113.10" });
  assert.equal(other.body.code, "permission_denied");
  for (let i = 0; i <= burst; i++) {
    assert.equal((await connectJson(wrong)).body.code, "permission_denied", `anonymous call ${i}`);
  }
});

test("a node stream over its token bucket has the excess dropped and counted", async () => {
  const network = await startTestNetwork(relay.url, relay.operatorToken);
  networks.push(network);
  const stream = await network.connect(await network.provisionNode());
  const sent = DEFAULT_HUB_LIMITS.nodeBurst + 1_000;
  const datagram = wireguardMessage(4, 32);
  stream.send(nodeFrame(Array.from({ length: sent }, () => datagram)));
  const { name, adminSecret } = network.network;
  const sample = `siderolink_relay_drops_total{network="${name}",reason="rate_limited"} `;
  const deadline = Date.now() + 5_000;
  let dropped = 0;
  while (Date.now() < deadline) {
    const text = await (
      await fetch(new URL(`/v1/networks/${name}/metrics`, relay.url), {
        headers: { authorization: `Bearer ${adminSecret}` },
      })
    ).text();
    dropped = Number(
      text
        .split("\n")
        .find((l) => l.startsWith(sample))
        ?.slice(sample.length),
    );
    if (dropped > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(dropped, 1_000);
  assert.ok(stream.isOpen, "the stream stays open");
});
