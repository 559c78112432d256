/**
 * A node chooses its own UUID, and `node list` prints it to an operator's terminal. Provision
 * now takes only UUIDs in their 8-4-4-4-12 form, but a database written by an earlier relay may
 * hold anything: a UUID with terminal escapes must reach the terminal as visible text, not as
 * escapes it obeys.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { openSqliteDatabase } from "../../relay/node/sqlite.ts";
import { createSqlNetworkStore } from "../../relay/store/sql-store.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { base64, createNetwork, randomKey, startRelay, tempDir, Uplink } from "./helpers.ts";

const run = promisify(execFile);
const CLI = join(import.meta.dirname, "../../relay/cli.ts");
/** A control character other than the newline that ends each line. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is its job.
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
/** Clears the screen, sets a window title through OSC, and rings the bell. */
const HOSTILE_UUID = "node-\u001b[2J\u001b]0;owned\u0007-\u009b31m-end";

const dir = tempDir();
after(() => dir.remove());

test("node list and node revoke print control characters in node UUIDs escaped", async () => {
  const server = await startRelay(dir.path);
  const network = await createNetwork(server, "esc");
  const uplink = new Uplink(server, "esc", network.uplinkSecret!);
  try {
    await uplink.ready();
    await assert.rejects(
      createClient(ProvisionService, createConnectTransport({ baseUrl: server.url })).provision({
        nodeUuid: HOSTILE_UUID,
        nodePublicKey: base64(randomKey()),
        joinToken: network.joinToken!,
      }),
      (error: unknown) => error instanceof ConnectError && error.code === Code.InvalidArgument,
    );
  } finally {
    uplink.close();
    await server.close();
  }
  const store = createSqlNetworkStore(openSqliteDatabase(dir.path), "esc");
  await store.savePeer({
    nodeUuid: HOSTILE_UUID,
    uniqueToken: "",
    joinTokenId: null,
    rebindAllowed: false,
    publicKey: base64(randomKey()),
    address: "fd00::5",
    virtualAddress: "fdae:41e4:649b:9304::5",
    talosVersion: "",
    firstSeen: 1,
    lastSeen: 1,
    rxBytes: 0,
    txBytes: 0,
    rxPackets: 0,
    txPackets: 0,
  });
  const listed = await run(process.execPath, [CLI, "node", "list", "esc", "--data", dir.path]);
  assert.doesNotMatch(listed.stdout, CONTROL);
  assert.ok(listed.stdout.includes("node-\\x1b[2J\\x1b]0;owned\\x07-\\x9b31m-end"), listed.stdout);
  const json = await run(process.execPath, [
    CLI,
    "node",
    "list",
    "esc",
    "--json",
    "--data",
    dir.path,
  ]);
  assert.equal(JSON.parse(json.stdout).nodes[0].nodeUuid, HOSTILE_UUID, "JSON keeps the value");
  const revoked = await run(process.execPath, [
    CLI,
    "node",
    "revoke",
    "esc",
    HOSTILE_UUID,
    "--data",
    dir.path,
  ]);
  assert.doesNotMatch(revoked.stdout, CONTROL);
});
