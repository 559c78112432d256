/**
 * The mesh discovery service and datagram relay on both runtimes: the Node relay (real `ws`)
 * and the Worker in workerd (Miniflare). Members here are plain WebSocket clients that seal
 * records with the cluster key, as the sidecar does.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { WebSocket } from "ws";
import { startRelayServer } from "../../relay/node/server.ts";
import { clusterSecrets, formatId, memberIdOf } from "../../shared/mesh/cluster.ts";
import {
  DatagramBatcher,
  decodeMeshFrame,
  encodePublish,
  forEachDatagram,
} from "../../shared/mesh/codec.ts";
import { MeshFrameType } from "../../shared/mesh/frame.ts";
import { type AffiliateRecord, openRecord, sealRecord } from "../../shared/mesh/record.ts";
import { parseIP } from "../../shared/net/ip.ts";
import { eventually } from "../support/eventually.ts";
import { removePersistDirectory, startWorkerRelay } from "../worker/support/miniflare.ts";

interface Runtime {
  readonly base: string;
  /** Headers a request carries to look as if from `address` (the edge's header on Workers). */
  from(address: string): Record<string, string>;
  /** Drops the cluster's in-memory state as the platform does (Workers only). */
  evict?(clusterId: string): Promise<void>;
  stop(): Promise<void>;
}

let keySeed = 1;
/** Generous: the machine these run on is shared, and a wait ends on its event anyway. */
const WAIT_MS = 15_000;
const newKey = () => Uint8Array.from({ length: 32 }, (_, i) => (keySeed * 31 + i) & 0xff);

function recordOf(publicKey: Uint8Array): AffiliateRecord {
  return {
    publicKey,
    meshAddress: parseIP("200:1001::1")!,
    listenPort: 51820,
    expiresAt: Math.floor(Date.now() / 1000) + 600,
    routedPrefixes: [{ address: parseIP("10.244.0.0")!, bits: 16 }],
    endpoints: [{ address: parseIP("192.0.2.1")!, port: 51820 }],
  };
}

class Member {
  readonly publicKey = newKey();
  readonly id = memberIdOf(this.publicKey);
  readonly records = new Map<string, { observed: Uint8Array; record: Uint8Array }>();
  readonly removed: string[] = [];
  readonly datagrams: string[] = [];
  synced = false;
  closed: { code: number; reason: string } | undefined;
  ws!: WebSocket;

  constructor() {
    keySeed++;
  }

  async connect(
    base: string,
    cluster: string,
    headers: Record<string, string> = {},
  ): Promise<void> {
    const url = `${base.replace(/^http/, "ws")}/v1/mesh/${cluster}/connect?member=${formatId(this.id)}`;
    this.ws = new WebSocket(url, { headers });
    this.ws.on("message", (data: Buffer, binary: boolean) => {
      if (!binary) return;
      const frame = decodeMeshFrame(new Uint8Array(data));
      if (frame.type === MeshFrameType.Record) {
        this.records.set(formatId(frame.member), {
          observed: frame.observed.slice(),
          record: frame.record.slice(),
        });
      } else if (frame.type === MeshFrameType.Removed) {
        this.removed.push(formatId(frame.member));
      } else if (frame.type === MeshFrameType.Synced) {
        this.synced = true;
      } else if (frame.type === MeshFrameType.Datagrams) {
        forEachDatagram(frame.frame, (member, datagram) =>
          this.datagrams.push(`${formatId(member)}:${Buffer.from(datagram).toString()}`),
        );
      }
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
    await new Promise<void>((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    await eventually("SYNCED", () => this.synced || this.closed, WAIT_MS);
  }

  publish(key: Uint8Array): void {
    this.ws.send(encodePublish(sealRecord(key, recordOf(this.publicKey))));
  }

  send(to: Member, text: string): void {
    const batcher = new DatagramBatcher((frame) => this.ws.send(Buffer.from(frame)));
    batcher.add(to.id, Buffer.from(text));
    batcher.flush();
  }

  close(): void {
    this.ws.close();
  }
}

for (const kind of ["node", "worker"] as const) {
  describe(`mesh relay on ${kind === "node" ? "Node" : "Workers (workerd)"}`, () => {
    let runtime: Runtime;
    before(async () => {
      if (kind === "node") {
        const dataDir = mkdtempSync(join(tmpdir(), "mesh-relay-"));
        const server = await startRelayServer({ host: "127.0.0.1", port: 0, dataDir });
        runtime = {
          base: server.url,
          from: () => ({}),
          stop: async () => {
            await server.close();
            rmSync(dataDir, { recursive: true, force: true });
          },
        };
      } else {
        const relay = await startWorkerRelay();
        runtime = {
          base: relay.url.toString().replace(/\/$/, ""),
          from: (address) => ({ "cf-connecting-ip": address }),
          evict: (clusterId) => relay.evictMesh(clusterId),
          stop: async () => {
            await relay.stop();
            await removePersistDirectory(relay);
          },
        };
      }
    });
    after(() => runtime.stop());

    it("pushes records between members of a cluster only, with the observed address beside the sealed blob", async () => {
      const token = `cluster-token-${kind}-${Date.now()}-a`;
      const { clusterId, recordKey } = clusterSecrets(token);
      const other = clusterSecrets(`${token}-other`);
      const a = new Member();
      const b = new Member();
      const stranger = new Member();
      await a.connect(runtime.base, clusterId, runtime.from("192.0.2.10"));
      a.publish(recordKey);
      await b.connect(runtime.base, clusterId, runtime.from("192.0.2.11"));
      await stranger.connect(runtime.base, other.clusterId, runtime.from("192.0.2.12"));
      stranger.publish(other.recordKey);
      // b learned a's record in its snapshot; a learns b's when b publishes.
      const fromA = b.records.get(formatId(a.id));
      assert.ok(fromA, "b got a's record on connect");
      assert.deepEqual(openRecord(recordKey, a.id, fromA.record).publicKey, a.publicKey);
      const expected = kind === "node" ? "::ffff:127.0.0.1" : "::ffff:192.0.2.10";
      assert.deepEqual(fromA.observed, parseIP(expected));
      b.publish(recordKey);
      await eventually("a gets b's record", () => a.records.has(formatId(b.id)), WAIT_MS);
      assert.equal(a.records.has(formatId(a.id)), false, "a member is not sent its own record");
      // The other cluster saw none of it, and its record reached no one here.
      assert.equal(stranger.records.size, 0);
      await eventually("b has a settled view", () => b.records.size === 1, WAIT_MS);
      assert.equal(a.records.has(formatId(stranger.id)), false);

      // What the relay stores is sealed: readable with the token's key only.
      const response = await fetch(`${runtime.base}/v1/mesh/${clusterId}/records`, {
        headers: runtime.from("192.0.2.13"),
      });
      const { records } = (await response.json()) as {
        records: { member: string; record: string }[];
      };
      assert.deepEqual(
        records.map((r) => r.member).sort(),
        [formatId(a.id), formatId(b.id)].sort(),
      );
      for (const stored of records) {
        const blob = Buffer.from(stored.record, "base64");
        const member = Buffer.from(stored.member, "hex");
        assert.equal(blob.includes(Buffer.from(a.publicKey)), false, "no public key in the clear");
        assert.equal(blob.includes(Buffer.from(parseIP("10.244.0.0")!)), false);
        assert.throws(() => openRecord(other.recordKey, member, blob), /does not authenticate/);
        assert.ok(openRecord(recordKey, member, blob));
      }
      for (const m of [a, b, stranger]) m.close();
    });

    it("relays datagrams between two members of the same cluster, tagged with the sender", async () => {
      const { clusterId } = clusterSecrets(`cluster-token-${kind}-${Date.now()}-b`);
      const other = clusterSecrets(`cluster-token-${kind}-${Date.now()}-c`);
      const a = new Member();
      const b = new Member();
      const outsider = new Member();
      await a.connect(runtime.base, clusterId);
      await b.connect(runtime.base, clusterId);
      await outsider.connect(runtime.base, other.clusterId);
      a.send(b, "hello b");
      b.send(a, "hello a");
      // Addressed to a member of another cluster: dropped, not delivered.
      a.send(outsider, "leak");
      outsider.send(a, "intrude");
      await eventually(
        "both delivered",
        () => a.datagrams.length === 1 && b.datagrams.length === 1,
        WAIT_MS,
      );
      assert.deepEqual(b.datagrams, [`${formatId(a.id)}:hello b`]);
      assert.deepEqual(a.datagrams, [`${formatId(b.id)}:hello a`]);
      // One more round trip proves the dropped ones were not merely slow.
      a.send(b, "again");
      await eventually("second datagram", () => b.datagrams.length === 2, WAIT_MS);
      assert.deepEqual(outsider.datagrams, []);
      assert.equal(a.datagrams.length, 1);
      for (const m of [a, b, outsider]) m.close();
    });

    if (kind === "worker") {
      it("keeps records and members' sockets across the Durable Object's eviction", async () => {
        const { clusterId, recordKey } = clusterSecrets(`cluster-token-${kind}-${Date.now()}-f`);
        const a = new Member();
        const b = new Member();
        await a.connect(runtime.base, clusterId);
        await b.connect(runtime.base, clusterId);
        a.publish(recordKey);
        await eventually("b has a's record", () => b.records.has(formatId(a.id)), WAIT_MS);
        await runtime.evict!(clusterId);
        // The hibernated sockets still switch datagrams, and a newcomer still gets a's record.
        b.send(a, "after eviction");
        await eventually("a got it", () => a.datagrams.length === 1, WAIT_MS);
        assert.deepEqual(a.datagrams, [`${formatId(b.id)}:after eviction`]);
        const c = new Member();
        await c.connect(runtime.base, clusterId);
        assert.ok(c.records.has(formatId(a.id)), "a's record outlived the eviction");
        for (const m of [a, b, c]) m.close();
      });
    }

    it("closes a socket that sends a malformed frame, naming the problem", async () => {
      const { clusterId } = clusterSecrets(`cluster-token-${kind}-${Date.now()}-d`);
      const a = new Member();
      await a.connect(runtime.base, clusterId);
      a.ws.send(Buffer.from([0x23, 1, 2]));
      await eventually("closed", () => a.closed, WAIT_MS);
      assert.equal(a.closed?.code, 1007);
      assert.match(a.closed?.reason ?? "", /datagram header/);
    });

    it("refuses bad cluster ids and member ids with a 400 that says what they must be", async () => {
      const bad = await fetch(`${runtime.base}/v1/mesh/${"ab".repeat(32)}/records/xyz`, {
        method: "PUT",
        body: new Uint8Array(100),
        headers: runtime.from("192.0.2.20"),
      });
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /member in the path must be 64 lowercase hex digits/);
    });

    it("limits each client address to a burst of 60 mesh requests", async () => {
      const { clusterId } = clusterSecrets(`cluster-token-${kind}-${Date.now()}-e`);
      const started = Date.now();
      const responses = await Promise.all(
        Array.from({ length: 100 }, () =>
          fetch(`${runtime.base}/v1/mesh/${clusterId}/records`, {
            headers: runtime.from("198.51.100.7"),
          }).then(async (response) => ({ status: response.status, body: await response.text() })),
        ),
      );
      const refilled = Math.ceil(((Date.now() - started) / 1000) * 15) + 1;
      const ok = responses.filter((r) => r.status === 200).length;
      const limited = responses.filter((r) => r.status === 429);
      assert.ok(ok <= 60 + refilled, `${ok} answered, at most 60 + ${refilled} refilled`);
      assert.ok(limited.length >= 100 - 60 - refilled, `${limited.length} refused`);
      assert.match(limited[0].body, /too many mesh requests from .*; retry in \d+ ms/);
      const elsewhere = await fetch(`${runtime.base}/v1/mesh/${clusterId}/records`, {
        headers: runtime.from("198.51.100.8"),
      });
      assert.equal(
        elsewhere.status,
        kind === "node" ? 429 : 200,
        "Node sees every test request from 127.0.0.1",
      );
    });
  });
}
