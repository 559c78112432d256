/**
 * How the relay's HTTP routes answer errors: a value the caller sent that cannot be accepted is
 * 400 with what was wrong; anything else is the relay's own fault, logged with its cause and
 * answered 500 with a body that reveals nothing of it.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createRelayApp } from "../../relay/app/app.ts";
import type { RelayDirectory } from "../../relay/app/runtime.ts";
import type { RelayServer } from "../../relay/node/server.ts";
import { createNetwork, startRelay, tempDir } from "./helpers.ts";

const OPERATOR = "operator-test-token";

describe("bad input is 400 with the message", () => {
  const dir = tempDir();
  let server: RelayServer;
  before(async () => {
    server = await startRelay(dir.path);
    await createNetwork(server, "errs");
  });
  after(async () => {
    await server.close();
    dir.remove();
  });

  const call = async (method: string, path: string, body: unknown) => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${OPERATOR}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as { error?: string } };
  };

  test("a network name outside the allowed form", async () => {
    const answer = await call("POST", "/v1/networks", { name: "Bad.Name" });
    assert.equal(answer.status, 400);
    assert.equal(
      answer.body.error,
      `network name: "Bad.Name" is not allowed: use 1-63 lower-case letters, digits and '-', starting with a letter or digit`,
    );
  });

  test("an address that is not IPv6, and one outside the network", async () => {
    const notIPv6 = await call("PUT", "/v1/networks/errs/addresses/node-1", {
      address: "10.0.0.1",
    });
    assert.equal(notIPv6.status, 400);
    assert.match(String(notIPv6.body.error), /^address: "10\.0\.0\.1" is not an IPv6 address/);
    const outside = await call("PUT", "/v1/networks/errs/addresses/node-1", { address: "fd00::5" });
    assert.equal(outside.status, 400);
    assert.match(
      String(outside.body.error),
      /^address fd00::5 is not a node address of network errs/,
    );
  });
});

describe("an internal error is 500 with a generic body", () => {
  test("a RangeError from inside the relay is logged with its cause and not shown", async (t) => {
    const internal = new RangeError("Invalid array length at slot 7 of the peer table");
    const directory: RelayDirectory = {
      runtime: () => Promise.reject(internal),
      list: () => Promise.reject(internal),
      created: () => Promise.reject(internal),
      live: () => [],
    };
    const { app } = createRelayApp({ directory, operatorToken: OPERATOR });
    const logged = t.mock.method(console, "error", (..._args: unknown[]) => {});

    for (const [method, path] of [
      ["GET", "/v1/networks"],
      ["GET", "/v1/networks/edge/nodes"],
    ]) {
      const response = await app.request(path, {
        method,
        headers: { authorization: `Bearer ${OPERATOR}` },
      });
      assert.equal(response.status, 500, path);
      const text = await response.text();
      assert.deepEqual(JSON.parse(text), { error: "internal error; see the relay's log" });
      assert.doesNotMatch(text, /array|slot|peer table/i);
    }
    assert.equal(logged.mock.callCount(), 2);
    assert.ok(logged.mock.calls.every((c) => c.arguments.includes(internal)));
  });
});
