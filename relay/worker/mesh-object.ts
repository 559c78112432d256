/**
 * One mesh cluster on Cloudflare: a Durable Object named after the cluster id (idFromName) that
 * holds its sealed records in SQLite and its members' hibernatable WebSockets, and switches
 * relayed datagrams between them (relay/mesh/cluster.ts).
 *
 * Hibernation: each socket carries its member id and observed address (serializeAttachment),
 * from which the cluster's socket table is rebuilt when the next event constructs the object;
 * records are in SQLite. An alarm at the earliest record expiry deletes expired records and
 * tells the members. A cluster whose last record expired deletes its storage.
 *
 * The publish rate limit is per object (per cluster): Durable Objects share no memory, and a
 * client spraying many clusters is held by each one's limit and by the cluster id it must know.
 */
import { DurableObject } from "cloudflare:workers";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import { Hono } from "hono";
import { CloseCode, PING_TEXT, PONG_TEXT } from "../../shared/tunnel/frame.ts";
import { HttpError } from "../app/http-error.ts";
import { createRateLimiter } from "../app/rate-limit.ts";
import {
  MeshCluster,
  type MeshRecordStore,
  type MeshSocket,
  type StoredRecord,
} from "../mesh/cluster.ts";
import {
  MESH_RATE_LIMIT,
  type MeshAdmission,
  type MeshRuntime,
  registerMeshRoutes,
} from "../mesh/routes.ts";
import { edgeClientAddress } from "./edge.ts";
import type { Env } from "./env.ts";

/** What a member's socket carries across hibernation (well under the 16 KiB limit). */
interface MeshAttachment {
  readonly v: 1;
  readonly member: string;
  readonly observed: string;
  readonly address: string;
}

interface RecordRow extends Record<string, SqlStorageValue> {
  member: string;
  observed: ArrayBuffer;
  record: ArrayBuffer;
  expires_at: number;
}

export class MeshObject extends DurableObject<Env> {
  readonly #cluster: MeshCluster;
  readonly #app: Hono;
  readonly #sockets = new WeakMap<WebSocket, MeshSocket>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_TEXT, PONG_TEXT));
    const sql = ctx.storage.sql;
    // deleteAll() drops the table with everything else: made again on the next use.
    const table = (): SqlStorage => {
      sql.exec(
        "CREATE TABLE IF NOT EXISTS mesh_records (member TEXT PRIMARY KEY, observed BLOB NOT NULL, record BLOB NOT NULL, expires_at INTEGER NOT NULL)",
      );
      return sql;
    };
    const store: MeshRecordStore = {
      all: () =>
        table()
          .exec<RecordRow>("SELECT member, observed, record, expires_at FROM mesh_records")
          .toArray()
          .map((row) => ({
            member: row.member,
            observed: new Uint8Array(row.observed),
            record: new Uint8Array(row.record),
            expiresAt: row.expires_at,
          })),
      put: (record: StoredRecord) => {
        table().exec(
          "INSERT INTO mesh_records (member, observed, record, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (member) DO UPDATE SET observed = excluded.observed, record = excluded.record, expires_at = excluded.expires_at",
          record.member,
          record.observed,
          record.record,
          record.expiresAt,
        );
      },
      delete: (member) => {
        table().exec("DELETE FROM mesh_records WHERE member = ?", member);
      },
    };
    const limiter = createRateLimiter(MESH_RATE_LIMIT);
    this.#cluster = new MeshCluster({ store, now: Date.now, publishLimiter: limiter });
    const runtime: MeshRuntime = {
      cluster: this.#cluster,
      acceptWebSocket: (_request, admission) => this.#accept(admission),
    };
    this.#app = new Hono();
    registerMeshRoutes(this.#app, {
      directory: { limiter, cluster: () => runtime },
      clientAddress: edgeClientAddress,
      now: Date.now,
    });
    this.#app.onError((error, c) => {
      if (error instanceof HttpError) return c.json({ error: error.message }, error.status);
      console.error("relay mesh: unhandled error", error);
      return c.json({ error: "internal error; see the relay's log" }, 500);
    });
    for (const ws of ctx.getWebSockets()) this.#restore(ws);
  }

  override async fetch(request: Request): Promise<Response> {
    const response = await this.#app.fetch(request);
    await this.#schedule();
    return response;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const socket = this.#sockets.get(ws) ?? this.#restore(ws);
    if (!socket) return;
    this.#cluster.message(socket, typeof message === "string" ? message : new Uint8Array(message));
    await this.#schedule();
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    const socket = this.#sockets.get(ws);
    if (socket) this.#cluster.closed(socket);
    try {
      ws.close(
        code === CloseCode.NoStatus || code === CloseCode.Abnormal ? CloseCode.Normal : code,
        reason,
      );
    } catch {
      // The runtime completed the closing handshake already.
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    const socket = this.#sockets.get(ws);
    if (socket) this.#cluster.closed(socket);
  }

  override async alarm(): Promise<void> {
    await this.#schedule();
  }

  /** Sweeps expired records and sets the alarm at the next expiry; no records: no storage. */
  async #schedule(): Promise<void> {
    const next = this.#cluster.sweep();
    if (next !== undefined) {
      const current = await this.ctx.storage.getAlarm();
      if (current === null || current > next) await this.ctx.storage.setAlarm(next);
    } else if (this.ctx.getWebSockets().length === 0) {
      await this.ctx.storage.deleteAll();
    }
  }

  #accept(admission: MeshAdmission): Response {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    if ("refuse" in admission) {
      server.accept();
      server.close(admission.refuse.code, admission.refuse.reason);
    } else {
      this.ctx.acceptWebSocket(server);
      const attachment: MeshAttachment = {
        v: 1,
        member: bytesToHex(admission.member),
        observed: bytesToHex(admission.observed),
        address: admission.address,
      };
      server.serializeAttachment(attachment);
      const socket = this.#wrap(server);
      this.#cluster.connect(socket, admission.member, admission.observed, admission.address);
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  /** The socket of a WebSocket that outlived the previous instance of this object. */
  #restore(ws: WebSocket): MeshSocket | undefined {
    const attachment = ws.deserializeAttachment() as MeshAttachment | null;
    if (attachment?.v !== 1) {
      ws.close(CloseCode.GoingAway, "relay restarted with an unknown connection state");
      return undefined;
    }
    const socket = this.#wrap(ws);
    this.#cluster.connect(
      socket,
      hexToBytes(attachment.member),
      hexToBytes(attachment.observed),
      attachment.address,
      true,
    );
    return socket;
  }

  #wrap(ws: WebSocket): MeshSocket {
    const socket: MeshSocket = {
      send(frame) {
        // A Durable Object's send copies the bytes before it returns.
        ws.send(frame);
      },
      close(code, reason) {
        try {
          ws.close(code, reason);
        } catch {
          // Already closing.
        }
      },
      bufferedAmount: 0,
    };
    this.#sockets.set(ws, socket);
    return socket;
  }
}
