/**
 * Hostile HTTP against the Node relay: oversized headers and bodies, clients that stall, wrong
 * content types and unknown paths get a 4xx (or the connection closed) quickly. (WebSocket
 * messages over the limit and unknown frame types: the relay contract, test/contract/.)
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { MAX_ADMIN_BODY_BYTES } from "../../relay/app/app.ts";
import { MAX_PROVISION_REQUEST_BYTES } from "../../relay/app/connect.ts";
import type { RelayServer } from "../../relay/node/server.ts";
import { MAX_HEADER_BYTES } from "../../relay/node/server.ts";
import { createNetwork, startRelay, tempDir } from "../relay/helpers.ts";

const HEADERS_TIMEOUT_MS = 400;
const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

/** Writes `request` on a raw TCP connection and resolves with everything read until it closes. */
function rawExchange(
  port: number,
  request: string,
  timeoutMs = 5_000,
): Promise<{ response: string; elapsedMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on("connect", () => socket.write(request));
    socket.on("data", (chunk) => chunks.push(chunk));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({
        response: Buffer.concat(chunks).toString("latin1"),
        elapsedMs: Date.now() - started,
      });
    });
  });
}

describe("hostile HTTP on the Node relay", () => {
  const dir = tempDir();
  let server: RelayServer;
  const sockets: { close(): void }[] = [];

  before(async () => {
    server = await startRelay(dir.path, { headersTimeoutMs: HEADERS_TIMEOUT_MS });
    await createNetwork(server, "http");
  });

  after(async () => {
    for (const socket of sockets) socket.close();
    await server.close();
    dir.remove();
  });

  test("request headers over the limit get 431", async () => {
    const response = await fetch(`${server.url}/healthz`, {
      headers: { "x-padding": "a".repeat(MAX_HEADER_BYTES + 1) },
    });
    assert.equal(response.status, 431);
  });

  test("a client that stalls inside its headers is disconnected after the headers timeout", async () => {
    const { response, elapsedMs } = await rawExchange(
      server.port,
      "GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: ",
    );
    assert.match(response, /^(HTTP\/1\.1 408|$)/, `answer: ${response}`);
    assert.ok(elapsedMs >= HEADERS_TIMEOUT_MS, `closed after ${elapsedMs} ms`);
  });

  test("a client that connects and sends nothing is disconnected after the headers timeout", async () => {
    const { response, elapsedMs } = await rawExchange(server.port, "");
    assert.equal(response, "");
    assert.ok(elapsedMs >= HEADERS_TIMEOUT_MS, `closed after ${elapsedMs} ms`);
  });

  test("unknown paths and methods get 404 with a JSON error", async () => {
    for (const [method, path] of [
      ["GET", "/nope"],
      ["DELETE", "/healthz"],
      ["GET", "/v1/networks/http/nothing-here"],
    ]) {
      const response = await fetch(`${server.url}${path}`, { method });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.match(((await response.json()) as { error: string }).error, /no route for/);
    }
  });

  test("admin bodies over the limit get 413 before any parsing", async () => {
    const response = await fetch(`${server.url}/v1/networks`, {
      method: "POST",
      headers: { authorization: "Bearer operator-test-token", "content-type": "application/json" },
      body: JSON.stringify({ name: "x".repeat(MAX_ADMIN_BODY_BYTES) }),
    });
    assert.equal(response.status, 413);
    assert.match(((await response.json()) as { error: string }).error, /request body over/);
  });

  test("Provision with a wrong content type gets 415", async () => {
    const response = await fetch(`${server.url}${PROVISION_PATH}`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "hello",
    });
    assert.equal(response.status, 415);
  });

  test("Provision bodies over the limit are refused with resource_exhausted", async () => {
    const response = await fetch(`${server.url}${PROVISION_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/proto", "connect-protocol-version": "1" },
      body: new Uint8Array(MAX_PROVISION_REQUEST_BYTES + 1),
    });
    const error = (await response.json()) as { code: string };
    assert.equal(error.code, "resource_exhausted", JSON.stringify(error));
  });

  test("plain gRPC over HTTP/1.1 is refused with UNIMPLEMENTED in the headers", async () => {
    const response = await fetch(`${server.url}${PROVISION_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/grpc+proto" },
      body: new Uint8Array([0, 0, 0, 0, 0]),
    });
    assert.equal(response.headers.get("grpc-status"), "12");
    assert.match(decodeURIComponent(response.headers.get("grpc-message") ?? ""), /gRPC-web/);
  });

  test("a tunnel route without an upgrade gets 426", async () => {
    const response = await fetch(`${server.url}/v1/networks/http/tunnel`);
    assert.equal(response.status, 426);
  });
});
