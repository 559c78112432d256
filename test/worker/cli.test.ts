/**
 * A Worker relay managed from zero with nothing but the siderolink-relay CLI and the operator
 * token (what `wrangler secret put RELAY_OPERATOR_TOKEN` sets): networks, tokens and nodes over
 * the admin API, and the API URL it hands out is one a sidecar can use with a Worker, deployed
 * or under `wrangler dev`.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { parseApiUrl } from "../../shared/siderolink/api-url.ts";
import {
  provisionClient,
  provisionWithAck,
  randomKey,
  TestUplink,
  uniqueNetworkName,
} from "./support/clients.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";

const run = promisify(execFile);
const CLI = join(import.meta.dirname, "../../relay/cli.ts");

let relay: WorkerRelay;
const uplinks: TestUplink[] = [];

before(async () => {
  relay = await startWorkerRelay();
});

after(async () => {
  for (const uplink of uplinks) uplink.socket.close();
  await relay?.stop();
  if (relay) await removePersistDirectory(relay);
});

async function cli(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, "--relay", relay.url.toString(), ...args], {
    env: { ...process.env, SIDEROLINK_RELAY_OPERATOR_TOKEN: relay.operatorToken },
    timeout: 15_000,
  });
  return stdout;
}

async function cliJson(...args: string[]): Promise<Record<string, unknown>> {
  return JSON.parse(await cli(...args, "--json"));
}

test("the CLI creates a network on the Worker; nodes get a TLS API URL, or under wrangler dev the local one", async () => {
  const name = uniqueNetworkName();
  const created = await cliJson("network", "create", name);
  assert.equal(created.name, name);
  assert.match(String(created.adminSecret), /^[A-Za-z0-9_-]{43}$/);

  // Reached on loopback over plain HTTP (wrangler dev): the URL dials that address, and the
  // command says how the sidecar talks to a Worker there (Connect, WebSocket).
  const local = parseApiUrl(String(created.apiUrl));
  assert.equal(local.origin, relay.url.origin);
  assert.equal(local.joinToken, created.joinToken);
  assert.equal(local.grpcTunnel, true);
  assert.equal(
    created.joinCommand,
    `siderolink-sidecar join '${created.apiUrl}' --provision-protocol connect --transport websocket`,
  );
  const text = await cli("network", "create", uniqueNetworkName());
  assert.match(
    text,
    /^node: {9}siderolink-sidecar join 'grpc:\/\/127\.0\.0\.1:\d+\?jointoken=[^']+' --provision-protocol connect --transport websocket$/m,
  );

  // Workers take no plain gRPC: reached by name, even over plain HTTP, the URL must say TLS.
  const shown = await getWithHost(`/v1/networks/${name}`, "relay.example.com");
  const api = parseApiUrl(String(shown.apiUrl));
  assert.equal(api.tls, true);
  assert.equal(api.scheme, "https");
  assert.equal(api.authority, "relay.example.com:443");
  // The Durable Object keeps hashes: secrets (and so the join command) are in the creating
  // answer only.
  assert.equal(shown.prefix, created.prefix);
  assert.equal(shown.joinToken, null);
  assert.equal(shown.adminSecret, null);
  assert.equal(shown.joinCommand, null);
});

/** A GET with its own Host header (fetch does not let a caller set one). */
function getWithHost(path: string, host: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      new URL(path, relay.url),
      { headers: { host, authorization: `Bearer ${relay.operatorToken}` } },
      (response) => {
        let body = "";
        response.on("data", (chunk: Buffer) => {
          body += chunk.toString();
        });
        response.on("end", () => resolve(JSON.parse(body) as Record<string, unknown>));
      },
    );
    request.on("error", reject);
    request.end();
  });
}

test("tokens made and revoked by the CLI decide who may provision on the Worker", async () => {
  const name = uniqueNetworkName();
  const created = await cliJson("network", "create", name);
  const uplink = await new TestUplink(relay.url, name, String(created.uplinkSecret)).hello();
  uplinks.push(uplink);
  const client = provisionClient(relay.url, "connect", "binary");

  const token = await cliJson("token", "create", name);
  const joinToken = String(token.joinToken);
  const nodeUuid = randomUUID();
  const { response } = await provisionWithAck(client, uplink, {
    nodeUuid,
    nodePublicKey: randomKey(),
    joinToken,
  });
  assert.match(response.nodeAddressPrefix, /^fd[0-9a-f:]+\/64$/);

  const listed = await cliJson("node", "list", name);
  const nodes = listed.nodes as { nodeUuid: string }[];
  assert.deepEqual(
    nodes.map((node) => node.nodeUuid),
    [nodeUuid],
  );

  await cli("token", "revoke", name, joinToken);
  await assert.rejects(
    client.provision({ nodeUuid: randomUUID(), nodePublicKey: randomKey(), joinToken }),
    (error: unknown) => error instanceof ConnectError && error.code === Code.PermissionDenied,
  );
});
