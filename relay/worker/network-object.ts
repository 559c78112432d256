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
 * traffic counters to the store. The relay's own counters (/metrics) are written to the same
 * SQLite (counters.ts) and read back when the object is built again.
 *
 * The HTTP-only tunnel's streams (relay/app/http-tunnel.ts) are response bodies of this object's
 * fetch, not WebSockets: they cannot hibernate, so the object stays in memory, and its alarm
 * keeps sweeping, for as long as one is open.
 *
 * Only requests for a network the directory object knows reach an object (index.ts), and the
 * operator's POST /v1/networks, which creates it: the admin route then announces the network
 * through the app's directory (`created`), which adds it to the directory object. An object
 * therefore keeps no guard against a missing network: an operator's create that fails before
 * the network exists (a bad field) leaves an empty schema and nothing else.
 */
import { DurableObject } from "cloudflare:workers";
import type { Hono } from "hono";
import { CloseCode, PING_TEXT, PONG_TEXT } from "../../shared/tunnel/frame.ts";
import { createRelayApp } from "../app/app.ts";
import { ConfigError, type RelayConfig } from "../app/config.ts";
import { CONSOLE_OBJECT_LOG, logStream } from "../app/log.ts";
import type { ProvisionCounts } from "../app/provision.ts";
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
import { COUNTER_FLUSH_DELAY_MS, loadCounters, saveCounters } from "./counters.ts";
import { durableSql } from "./durable-sql.ts";
import { edgeClientAddress } from "./edge.ts";
import {
  configOf,
  DIRECTORY_NAME,
  type Env,
  internalError,
  misconfigured,
  WORKER_OPERATOR_TOKEN_HINT,
} from "./env.ts";
import { createDurableHubSocket } from "./hub-socket.ts";

interface Relay {
  readonly runtime: NetworkRuntime;
  readonly app: Hono;
  readonly provisions: ProvisionCounts;
}

/** A socket as the hub knows it, and how to log its end. */
interface Wrapped {
  readonly socket: HubSocket;
  readonly gone: (code: number, reason: string) => void;
}

export class NetworkObject extends DurableObject<Env> {
  readonly #sql: SqlExecutor;
  readonly #sockets = new WeakMap<WebSocket, Wrapped>();
  #relay: Relay | undefined;
  #migrated = false;
  #flushScheduled = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = durableSql(ctx.storage);
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_TEXT, PONG_TEXT));
  }

  override async fetch(request: Request): Promise<Response> {
    const config = configOf(this.env);
    if (config instanceof ConfigError) return misconfigured(config);
    try {
      return await this.#serve(request, config);
    } catch (error) {
      return internalError(error);
    }
  }

  async #serve(request: Request, config: RelayConfig): Promise<Response> {
    const { runtime, app } = this.#open(config);
    const response = await app.fetch(request);
    await this.#armSweep(runtime, config);
    this.#saveCounters();
    return response;
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const { hub } = this.#open().runtime;
    const socket = this.#socketOf(ws);
    if (socket)
      hub.message(socket, typeof message === "string" ? message : new Uint8Array(message));
    if (!this.#flushScheduled) {
      // Traffic moves the counters: the alarm writes them soon, before an eviction could lose
      // them. (An alarm, not a timer: a pending timer holds the instance in memory.)
      this.#flushScheduled = true;
      await this.#alarmWithin(COUNTER_FLUSH_DELAY_MS);
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    this.#sockets.get(ws)?.gone(code, reason);
    await this.#forget(ws);
    try {
      ws.close(
        code === CloseCode.NoStatus || code === CloseCode.Abnormal ? CloseCode.Normal : code,
        reason,
      );
    } catch {
      // The runtime completed the closing handshake already.
    }
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    this.#sockets.get(ws)?.gone(CloseCode.Abnormal, String(error));
    await this.#forget(ws);
  }

  override async alarm(): Promise<void> {
    const config = configOf(this.env);
    if (config instanceof ConfigError) return;
    const { hub } = this.#open(config).runtime;
    hub.sweep();
    await this.#storeTraffic();
    this.#saveCounters();
    if (this.ctx.getWebSockets().length > 0 || hub.nodeCount + hub.uplinkCount > 0) {
      await this.ctx.storage.setAlarm(Date.now() + this.#sweepInterval(config));
    }
  }

  /** Arms the sweep for streams the hub holds, whatever carries them (HTTP-only ones too). */
  async #armSweep(runtime: NetworkRuntime, config: RelayConfig): Promise<void> {
    if (runtime.hub.nodeCount + runtime.hub.uplinkCount === 0) return;
    if ((await this.ctx.storage.getAlarm()) === null) {
      await this.ctx.storage.setAlarm(Date.now() + this.#sweepInterval(config));
    }
  }

  /** Moves the alarm (which sweeps and writes counters) to within `ms` from now. */
  async #alarmWithin(ms: number): Promise<void> {
    const at = Date.now() + ms;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  #sweepInterval(config: RelayConfig): number {
    return sweepIntervalMs(config.hubLimits.livenessTimeoutMs);
  }

  /** Writes the relay's counters. */
  #saveCounters(): void {
    this.#flushScheduled = false;
    const relay = this.#relay;
    if (!relay) return;
    saveCounters(this.#sql, relay.runtime.hub.metrics, relay.provisions);
  }

  /**
   * The relay for this object's network, built on first use and after every eviction. Events
   * on sockets come only after a request that found the configuration sound.
   */
  #open(known?: RelayConfig): Relay {
    if (!this.#migrated) {
      migrate(this.#sql);
      this.#migrated = true;
    }
    if (this.#relay) return this.#relay;
    const config = known ?? configOf(this.env);
    if (config instanceof ConfigError) throw config;
    // The id's name is the network; an alarm may wake the object without it, and then the
    // store, which holds exactly this network, names it.
    const name = this.ctx.id.name ?? listNetworkNames(this.#sql)[0];
    if (name === undefined) {
      throw new Error("this Durable Object was not addressed by network name and stores none");
    }
    let runtime: NetworkRuntime | undefined;
    runtime = createNetworkRuntime({
      store: createSqlNetworkStore(this.#sql, name),
      acceptWebSocket: (_request, admission) => this.#accept(runtime!, admission, config),
      hubLimits: config.hubLimits,
      log: CONSOLE_OBJECT_LOG,
    });
    const directory: RelayDirectory = {
      runtime: async (wanted) => {
        if (wanted !== name) {
          throw new Error(`network ${JSON.stringify(wanted)} reached the object of ${name}`);
        }
        return runtime;
      },
      list: async () => listNetworkNames(this.#sql),
      // Adding a name is idempotent, so creates that raced (or were retried) may all announce it.
      created: (created) =>
        this.env.DIRECTORY.get(this.env.DIRECTORY.idFromName(DIRECTORY_NAME)).add(created),
      live: () => [runtime],
    };
    const { app, provision } = createRelayApp({
      directory,
      operatorToken: this.env.RELAY_OPERATOR_TOKEN,
      operatorTokenHint: WORKER_OPERATOR_TOKEN_HINT,
      clientAddress: edgeClientAddress,
      plainGrpc: false,
      limits: config.limits,
      log: CONSOLE_OBJECT_LOG,
    });
    loadCounters(this.#sql, runtime.hub.metrics, provision.counts);
    this.#relay = { runtime, app, provisions: provision.counts };
    runtime.hub.restore(this.#restoredSockets(runtime));
    return this.#relay;
  }

  /** The sockets that outlived the previous instance, with the attachments they carry. */
  *#restoredSockets(runtime: NetworkRuntime): Iterable<readonly [HubSocket, SocketAttachment]> {
    for (const ws of this.ctx.getWebSockets()) {
      const attachment: unknown = ws.deserializeAttachment();
      if (!isSocketAttachment(attachment)) {
        ws.close(CloseCode.GoingAway, "relay restarted with an unknown connection state");
        continue;
      }
      yield [this.#wrap(runtime, ws, attachment, false), attachment];
    }
  }

  async #accept(
    runtime: NetworkRuntime,
    admission: Admission,
    config: RelayConfig,
  ): Promise<Response> {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    if ("refuse" in admission) {
      // Not hibernatable: it lives only until the close frame is out.
      server.accept();
      server.close(admission.refuse.code, admission.refuse.reason);
    } else {
      // No tags: the attachment says all the hub needs, and survives hibernation with it.
      this.ctx.acceptWebSocket(server);
      runtime.hub.attach(this.#wrap(runtime, server, admission.attach, true), admission.attach);
      if ((await this.ctx.storage.getAlarm()) === null) {
        await this.ctx.storage.setAlarm(Date.now() + this.#sweepInterval(config));
      }
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  /** The hub's socket over `ws`, which logs its end; and its opening when `opened`. */
  #wrap(
    runtime: NetworkRuntime,
    ws: WebSocket,
    attachment: SocketAttachment,
    opened: boolean,
  ): HubSocket {
    const socket = createDurableHubSocket(this.ctx, ws);
    const gone = logStream(
      runtime.log,
      socket,
      {
        network: runtime.name,
        role: attachment.role,
        virtualAddress: attachment.role === "node" ? attachment.virtualAddress : undefined,
      },
      opened,
    );
    this.#sockets.set(ws, { socket, gone });
    return socket;
  }

  /** The hub's socket for `ws`; every accepted socket was wrapped on accept or on restore. */
  #socketOf(ws: WebSocket): HubSocket | undefined {
    const known = this.#sockets.get(ws);
    if (known) return known.socket;
    const attachment: unknown = ws.deserializeAttachment();
    if (!isSocketAttachment(attachment)) return undefined;
    const { runtime } = this.#open();
    const wrapped = this.#wrap(runtime, ws, attachment, false);
    runtime.hub.restore([[wrapped, attachment]]);
    return wrapped;
  }

  async #forget(ws: WebSocket): Promise<void> {
    const socket = this.#socketOf(ws);
    if (socket) this.#open().runtime.hub.closed(socket);
    // A departed node's counters would be lost with the next eviction: store them now.
    await this.#storeTraffic();
    this.#saveCounters();
  }

  async #storeTraffic(): Promise<void> {
    const { runtime } = this.#open();
    for (const traffic of runtime.hub.drainTraffic()) {
      await runtime.store.recordTraffic(traffic.virtualAddress, traffic);
    }
  }
}
