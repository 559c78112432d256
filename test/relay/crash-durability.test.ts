/**
 * A Provision the relay answered survives the relay process dying at once (kill -9) in the
 * middle of a provisioning burst: every node that got an answer is in the store afterwards.
 * The store commits under WAL with synchronous=NORMAL (relay/node/sqlite.ts).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { openSqliteDatabase } from "../../relay/node/sqlite.ts";
import { createSqlNetworkStore } from "../../relay/store/sql-store.ts";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { nodeBinary } from "../sidecar/support/cli.ts";
import { eventually } from "../support/eventually.ts";
import { base64, randomKey, tempDir, Uplink } from "./helpers.ts";

// The benchmarks' relay process: Provision rate limits lifted, so the burst is not refused.
const relayFixture = fileURLToPath(new URL("../../bench/support/node-relay.ts", import.meta.url));
/** Answers to collect before the kill, so the burst is well under way. */
const ANSWERED_BEFORE_KILL = 300;
const CONCURRENT_CLIENTS = 32;

const dir = tempDir();
let relay: ChildProcess | undefined;
after(() => {
  relay?.kill("SIGKILL");
  dir.remove();
});

test("kill -9 during a provisioning burst: every node that got an answer is in the store", async () => {
  relay = spawn(nodeBinary, [relayFixture, dir.path, "crash"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const child = relay;
  let printed = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    printed += chunk.toString();
  });
  const line = await eventually("the relay to print its address", () =>
    printed.includes("\n") ? printed.split("\n")[0] : undefined,
  );
  const info = JSON.parse(line) as { url: string; joinToken: string; uplinkSecret: string };
  const uplink = new Uplink({ url: info.url }, "crash", info.uplinkSecret);
  await uplink.ready();

  const client = createClient(ProvisionService, createGrpcTransport({ baseUrl: info.url }));
  const answered = new Map<string, string>();
  let dead = false;
  let killed = false;
  const errorsBeforeKill: string[] = [];
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const worker = async (): Promise<void> => {
    while (!dead) {
      const nodeUuid = randomUUID();
      const key = base64(randomKey());
      try {
        await client.provision({
          nodeUuid,
          nodePublicKey: key,
          joinToken: info.joinToken,
          nodeUniqueToken: "t",
        });
        answered.set(nodeUuid, key);
        if (answered.size === ANSWERED_BEFORE_KILL) {
          killed = true;
          child.kill("SIGKILL");
        }
      } catch (error) {
        if (!killed) errorsBeforeKill.push(String(error));
      }
    }
  };
  const workers = Array.from({ length: CONCURRENT_CLIENTS }, worker);
  await exited;
  dead = true;
  await Promise.all(workers);
  uplink.close();
  assert.equal(child.signalCode, "SIGKILL");
  assert.deepEqual(errorsBeforeKill, [], "no Provision failed while the relay was alive");
  assert.ok(answered.size >= ANSWERED_BEFORE_KILL, `${answered.size} answered`);

  const database = openSqliteDatabase(dir.path);
  try {
    const store = createSqlNetworkStore(database, "crash");
    const missing: string[] = [];
    for (const [nodeUuid, key] of answered) {
      const peer = await store.peerByUuid(nodeUuid);
      if (peer?.publicKey !== key) missing.push(nodeUuid);
    }
    assert.deepEqual(missing, [], `answered nodes missing after the crash, of ${answered.size}`);
  } finally {
    database.close();
  }
});
