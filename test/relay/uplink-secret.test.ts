/**
 * A network created before uplinks had their own secret: its uplink opens with the admin secret,
 * logged as a warning naming the command that mints an uplink secret, until the operator mints
 * one; from then on only the uplink secret opens it.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { LogRecord } from "../../relay/app/log.ts";
import { mintUplinkSecret } from "../../relay/app/networks.ts";
import { hashSecret } from "../../relay/store/secret-hash.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { startRelay, tempDir, Uplink } from "./helpers.ts";

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

test("a network without an uplink secret: the admin secret opens its uplink with a warning, until one is minted", async () => {
  const dir = tempDir();
  cleanups.push(dir.remove);
  const records: LogRecord[] = [];
  const server = await startRelay(dir.path, { log: (record) => records.push(record) });
  cleanups.push(() => server.close());
  const adminSecret = "Adm1nSecretOfANetworkWithoutAnUplinkSecret0";
  const runtime = await server.directory.runtime("older");
  await runtime.store.createNetwork({
    installationId: "5d0d3a8e-4a8e-4f63-9a70-2f3c0d9b7e11",
    adminSecretHash: hashSecret(adminSecret),
    uplinkSecretHash: null,
    requireUniqueToken: false,
    createdAt: 1,
  });
  await server.directory.created("older");

  const legacy = new Uplink(server, "older", adminSecret);
  cleanups.push(() => legacy.close());
  await legacy.ready();
  const warning = records.find((record) => record.event === "uplink_admin_secret");
  assert.ok(warning, JSON.stringify(records));
  assert.match(String(warning.warning), /siderolink-relay network uplink-secret older/);

  const uplinkSecret = await mintUplinkSecret(await server.directory.runtime("older"));
  const refused = new Uplink(server, "older", adminSecret, legacy.serverKey);
  cleanups.push(() => refused.close());
  const closed = await refused.waitClosed();
  assert.equal(closed.code, CloseCode.Unauthorized);
  assert.match(closed.reason, /admin secret does not open the uplink/);
  const own = new Uplink(server, "older", uplinkSecret, legacy.serverKey);
  cleanups.push(() => own.close());
  await own.ready();
  assert.equal((await legacy.waitClosed()).code, CloseCode.Replaced);
});
