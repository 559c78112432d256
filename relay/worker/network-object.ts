/**
 * One network's relay on Cloudflare: a Durable Object named after the network (idFromName)
 * that runs the portable relay app over its own SQLite storage and hibernatable WebSockets.
 *
 * Hibernation: the object may be evicted whenever it is idle, while its WebSockets stay open.
 * Nothing it needs lives only in memory: the store is SQLite, and each socket carries its hub
 * attachment (serializeAttachment), from which the hub's registry is rebuilt when the next
 * event constructs the object again. Pings are answered by the runtime without waking it.
 *
 * An alarm every SWEEP_INTERVAL_MS (a quarter of a shorter liveness timeout: sweepIntervalMs,
 * as on Node), armed while sockets are open, closes silent streams and writes the nodes'
 * traffic counters to the store.
 *
 * The HTTP-only tunnel's streams (relay/app/http-tunnel.ts) are response bodies of this object's
 * fetch, not WebSockets: they cannot hibernate, so the object stays in memory, and its alarm
 * keeps sweeping, for as long as one is open.
 *
 * Any name reaches an object (a join token may name a network that does not exist), so an
 * object whose request leaves no network behind deletes its storage again: guessing names
 * costs the relay no storage. A request that leaves a network where there was none created it,
 * and the object adds the name to the relay's directory (directory-object.ts).
 */
import { DurableObject } from "cloudflare:workers";
import type { Hono } from "hono";
import { CloseCode, LIVENESS_TIMEOUT_MS, PING_TEXT, PONG_TEXT } from "../../shared/tunnel/frame.ts";
import { createRelayApp } from "../app/app.ts";
import {
  type Admission,
  createNetworkRuntime,
  type NetworkRuntime,
  type RelayDirectory,
} from "../app/runtime.ts";
import { sweepIntervalMs } from "../hub/registry.ts";
import { type HubSocket, isSocketAttachment, type SocketAttachment } from "../hub/socket.ts";
import { listNetworkNames, migrate } from "../store/schema.ts";
import type { SqlExecutor } from "../store/sql.ts";
import { createSqlNetworkStore } from "../store/sql-store.ts";
import { durableSql } from "./durable-sql.ts";
import { edgeClientAddress } from "./edge.ts";
import { DIRECTORY_NAME, type Env } from "./env.ts";
import { createDurableHubSocket } from "./hub-socket.ts";

interface Relay {
  readonly runtime: NetworkRuntime;
  readonly app: Hono;
}

export class NetworkObject extends DurableObject<Env> {
  readonly #sql: SqlExecutor;
  readonly #sockets = new WeakMap<WebSocket, HubSocket>();
  readonly #livenessTimeoutMs: number;
  readonly #sweepIntervalMs: number;
  #relay: Relay | undefined;
  #migrated = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = durableSql(ctx.storage);
    this.#livenessTimeoutMs = livenessTimeout(env.RELAY_LIVENESS_TIMEOUT_MS);
    this.#sweepIntervalMs = sweepIntervalMs(this.#livenessTimeoutMs);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_TEXT, PONG_TEXT));
  }

  override async fetch(request: Request): Promise<Response> {
    const { runtime, app } = this.#open();
    const existed = (await runtime.store.network()) !== undefined;
    const response = await app.fetch(request);
    await this.#armSweep(runtime);
    const exists = (await runtime.store.network()) !== undefined;
    if (!exists) {
      await this.ctx.storage.deleteAll();
      this.#migrated = false;
    } else if (!existed) {
      await this.#created(runtime.name);
    }
    return response;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const { hub } = this.#open().runtime;
    const socket = this.#socketOf(ws);
    if (socket)
      hub.message(socket, typeof message === "string" ? message : new Uint8Array(message));
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    await this.#forget(ws);
    try {
      ws.close(code === 1005 || code === 1006 ? CloseCode.Normal : code, reason);
    } catch {
      // The runtime completed the closing handshake already.
    }
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    await this.#forget(ws);
  }

  override async alarm(): Promise<void> {
    const { hub } = this.#open().runtime;
    hub.sweep();
    await this.#storeTraffic();
    if (this.ctx.getWebSockets().length > 0 || hub.nodeCount + hub.uplinkCount > 0) {
      await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs);
    }
  }

  /** Arms the sweep for streams the hub holds, whatever carries them (HTTP-only ones too). */
  async #armSweep(runtime: NetworkRuntime): Promise<void> {
    if (runtime.hub.nodeCount + runtime.hub.uplinkCount === 0) return;
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + this.#sweepIntervalMs);
    }
  }

  /**
   * This object's network came to exist. Adding a name is idempotent, so requests that raced to
   * create it may all announce it.
   */
  async #created(name: string): Promise<void> {
    const directory = this.env.DIRECTORY.get(this.env.DIRECTORY.idFromName(DIRECTORY_NAME));
    await directory.add(name);
  }

  /** The relay for this object's network, built on first use and after every eviction. */
  #open(): Relay {
    if (!this.#migrated) {
      migrate(this.#sql);
      this.#migrated = true;
    }
    if (this.#relay) return this.#relay;
    // The id's name is the network; an alarm may wake the object without it, and then the
    // store, which holds exactly this network, names it.
    const name = this.ctx.id.name ?? listNetworkNames(this.#sql)[0];
    if (name === undefined) {
      throw new Error("this Durable Object was not addressed by network name and stores none");
    }
    let runtime: NetworkRuntime | undefined;
    runtime = createNetworkRuntime({
      store: createSqlNetworkStore(this.#sql, name),
      acceptWebSocket: (request, admission) => this.#accept(runtime!, request, admission),
      hubLimits: { livenessTimeoutMs: this.#livenessTimeoutMs },
    });
    const directory: RelayDirectory = {
      runtime: async (wanted) => {
        if (wanted !== name) {
          throw new Error(`network ${JSON.stringify(wanted)} reached the object of ${name}`);
        }
        return runtime;
      },
      list: async () => listNetworkNames(this.#sql),
      live: () => [runtime],
    };
    const { app } = createRelayApp({
      directory,
      operatorToken: this.env.RELAY_OPERATOR_TOKEN,
      clientAddress: edgeClientAddress,
      plainGrpc: false,
    });
    this.#relay = { runtime, app };
    runtime.hub.restore(this.#restoredSockets());
    return this.#relay;
  }

  /** The sockets that outlived the previous instance, with the attachments they carry. */
  *#restoredSockets(): Iterable<readonly [HubSocket, SocketAttachment]> {
    for (const ws of this.ctx.getWebSockets()) {
      const attachment: unknown = ws.deserializeAttachment();
      if (!isSocketAttachment(attachment)) {
        ws.close(CloseCode.GoingAway, "relay restarted with an unknown connection state");
        continue;
      }
      yield [this.#wrap(ws), attachment];
    }
  }

  async #accept(
    runtime: NetworkRuntime,
    _request: Request,
    admission: Admission,
  ): Promise<Response> {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    if ("refuse" in admission) {
      // Not hibernatable: it lives only until the close frame is out.
      server.accept();
      server.close(admission.refuse.code, admission.refuse.reason);
    } else {
      // No tags: the attachment says all the hub needs, and survives hibernation with it.
      this.ctx.acceptWebSocket(server);
      runtime.hub.attach(this.#wrap(server), admission.attach);
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  #wrap(ws: WebSocket): HubSocket {
    const socket = createDurableHubSocket(this.ctx, ws);
    this.#sockets.set(ws, socket);
    return socket;
  }

  /** The hub's socket for `ws`; every accepted socket was wrapped on accept or on restore. */
  #socketOf(ws: WebSocket): HubSocket | undefined {
    const socket = this.#sockets.get(ws);
    if (socket) return socket;
    const attachment: unknown = ws.deserializeAttachment();
    if (!isSocketAttachment(attachment)) return undefined;
    const wrapped = this.#wrap(ws);
    this.#open().runtime.hub.restore([[wrapped, attachment]]);
    return wrapped;
  }

  async #forget(ws: WebSocket): Promise<void> {
    const socket = this.#socketOf(ws);
    if (socket) this.#open().runtime.hub.closed(socket);
    // A departed node's counters would be lost with the next eviction: store them now.
    await this.#storeTraffic();
  }

  async #storeTraffic(): Promise<void> {
    const { runtime } = this.#open();
    for (const traffic of runtime.hub.drainTraffic()) {
      await runtime.store.recordTraffic(traffic.virtualAddress, traffic);
    }
  }
}

function livenessTimeout(value: string | number | undefined): number {
  if (value === undefined || value === "") return LIVENESS_TIMEOUT_MS;
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms < 1_000) {
    throw new RangeError(
      `RELAY_LIVENESS_TIMEOUT_MS ${JSON.stringify(value)} is not a whole number of milliseconds >= 1000; fix or remove it in wrangler.toml [vars]`,
    );
  }
  return ms;
}
