/**
 * Faults of the Node relay: killed (SIGKILL) under load and started again on the same data dir
 * and port; its store locked by another process; its store on a read-only file system. Each either recovers by itself or fails with a message naming the
 * cause, and no provisioned peer is lost. The read-only cases remount a bind mount, so they need
 * root.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, test } from "node:test";
import type { RelayServer } from "../../relay/node/server.ts";
import { DATABASE_FILE } from "../../relay/node/sqlite.ts";
import { StoreUnavailableError } from "../../relay/store/store.ts";
import { FrameType } from "../../shared/tunnel/frame.ts";
import {
  base64,
  createNetwork,
  NodeStream,
  randomKey,
  startRelay,
  tempDir,
  transportMessage,
  Uplink,
} from "../relay/helpers.ts";
import { eventually } from "../support/eventually.ts";
import { postJson } from "./soak.ts";
import { RelayProcess } from "./support/relay-process.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

interface Answer {
  readonly code?: string;
  readonly message?: string;
  readonly grpcPeerAddrPort?: string;
}

function provision(port: number, joinToken: string): Promise<Answer> {
  return postJson(port, PROVISION_PATH, {
    nodeUuid: crypto.randomUUID(),
    nodePublicKey: base64(randomKey()),
    joinToken,
  }) as Promise<Answer>;
}

async function nodeCount(url: string, network: string, secret: string): Promise<number> {
  const response = await fetch(`${url}/v1/networks/${network}/nodes`, {
    headers: { authorization: `Bearer ${secret}` },
  });
  assert.equal(response.status, 200);
  return ((await response.json()) as { nodes: unknown[] }).nodes.length;
}

/** A minimal RelayServer-like view for the Uplink and NodeStream helpers. */
function asServer(url: string): RelayServer {
  return { url } as RelayServer;
}

describe("relay faults", () => {
  const dirs: { path: string; remove(): void }[] = [];
  const sockets: { close(): void }[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];

  after(async () => {
    for (const socket of sockets) socket.close();
    for (const cleanup of cleanups.reverse()) await cleanup();
    for (const dir of dirs) dir.remove();
  });

  test("killed under load and restarted: every peer is kept, nodes and the uplink come back", async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = await RelayProcess.start({ dataDir: dir.path, network: "crash" });
    cleanups.push(() => first.kill());
    const network = first.network!;
    const uplink = new Uplink(asServer(first.url), "crash", network.uplinkSecret);
    sockets.push(uplink);
    await uplink.ready();
    const nodes: string[] = [];
    for (let i = 0; i < 20; i++)
      nodes.push((await provision(first.port, network.joinToken!)).grpcPeerAddrPort!);
    const streams = nodes.map((addr) => new NodeStream(asServer(first.url), "crash", addr));
    sockets.push(...streams);
    await Promise.all(streams.map((s) => s.opened));
    // Load: every node sends while the relay dies.
    const load = setInterval(() => {
      for (const stream of streams)
        if (stream.closed === undefined) stream.sendDatagrams([transportMessage(1)]);
    }, 5);
    await eventually("traffic at the uplink", () => uplink.received.length > 100 || undefined);
    await first.kill();
    clearInterval(load);
    await eventually(
      "the streams to notice",
      () => streams.every((s) => s.closed !== undefined) || undefined,
    );

    const second = await RelayProcess.start({
      dataDir: dir.path,
      network: "crash",
      port: first.port,
    });
    cleanups.push(() => second.stop());
    assert.equal(await nodeCount(second.url, "crash", network.adminSecret), 20, "no peer lost");
    const again = new Uplink(asServer(second.url), "crash", network.uplinkSecret, uplink.serverKey);
    sockets.push(again);
    const list = await again.ready();
    assert.equal(list.peers.length, 20, "the uplink gets every peer back");
    const back = nodes.map((addr) => new NodeStream(asServer(second.url), "crash", addr));
    sockets.push(...back);
    await Promise.all(back.map((s) => s.opened));
    back[7].sendDatagrams([transportMessage(77)]);
    await eventually("traffic after the restart", () => again.received.length > 0 || undefined);
  });

  test("a store locked by another process: Provision and admin calls fail clearly, then recover", async () => {
    const dir = tempDir();
    dirs.push(dir);
    const server = await startRelay(dir.path, { storeBusyTimeoutMs: 200 });
    cleanups.push(() => server.close());
    const network = await createNetwork(server, "locked");
    const uplink = new Uplink(server, "locked", network.uplinkSecret);
    sockets.push(uplink);
    await uplink.ready();
    for (let i = 0; i < 3; i++)
      assert.ok((await provision(server.port, network.joinToken!)).grpcPeerAddrPort);

    const other = new DatabaseSync(join(dir.path, DATABASE_FILE));
    other.exec("BEGIN EXCLUSIVE");
    try {
      const refused = await provision(server.port, network.joinToken!);
      assert.equal(refused.code, "unavailable", JSON.stringify(refused));
      assert.match(refused.message ?? "", /store .* is locked by another process \(SQLITE_BUSY\)/);
      const token = await fetch(`${server.url}/v1/networks/locked/tokens`, {
        method: "POST",
        headers: { authorization: `Bearer ${network.adminSecret}` },
      });
      assert.equal(token.status, 503);
      assert.match(((await token.json()) as { error: string }).error, /locked by another process/);
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    assert.ok((await provision(server.port, network.joinToken!)).grpcPeerAddrPort, "recovered");
    assert.equal(await nodeCount(server.url, "locked", network.adminSecret), 4, "no peer lost");
  });

  test("a store on a read-only file system: the relay refuses to start, naming it; no peer lost", async () => {
    assert.equal(
      process.getuid?.(),
      0,
      "this test remounts a bind mount read-only: run it as root",
    );
    const dir = tempDir();
    dirs.push(dir);
    const source = join(dir.path, "source");
    const mount = join(dir.path, "mount");
    mkdirSync(source);
    mkdirSync(mount);
    execFileSync("mount", ["--bind", source, mount]);
    cleanups.push(() => {
      execFileSync("umount", ["-l", mount]);
    });
    // Linux refuses to remount read-only while files are open for writing, so the relay is
    // stopped first: what is tested is a relay started on a store it cannot write.
    const remount = (mode: "ro" | "rw") =>
      execFileSync("mount", ["-o", `remount,bind,${mode}`, mount]);

    const server = await startRelay(mount);
    const network = await createNetwork(server, "readonly");
    const uplink = new Uplink(server, "readonly", network.uplinkSecret);
    sockets.push(uplink);
    await uplink.ready();
    for (let i = 0; i < 3; i++)
      assert.ok((await provision(server.port, network.joinToken!)).grpcPeerAddrPort);
    await server.close();

    remount("ro");
    try {
      await assert.rejects(startRelay(mount), (error: unknown) => {
        assert.ok(error instanceof StoreUnavailableError, String(error));
        assert.match(
          error.message,
          /the relay's store .*relay\.sqlite is (read-only|not openable)/,
        );
        return true;
      });
    } finally {
      remount("rw");
    }
    const restarted = await startRelay(mount);
    cleanups.push(() => restarted.close());
    assert.equal(
      await nodeCount(restarted.url, "readonly", network.adminSecret),
      3,
      "no peer lost",
    );
    const again = new Uplink(restarted, "readonly", network.uplinkSecret, uplink.serverKey);
    sockets.push(again);
    assert.equal((await again.ready()).peers.length, 3);
    assert.ok(again.control.some((m) => m.type === FrameType.PeerList));
  });
});
