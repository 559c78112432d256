/**
 * Who is connected to one network's hub: its node streams, keyed by virtual address, and its
 * uplink (at most one). A new stream for a taken place replaces the old one; `sweep` closes
 * streams gone silent; traffic counters of departed nodes are kept until drained.
 */

import {
  CloseCode,
  PING_INTERVAL_MS,
  PING_TEXT,
  REASON_PEER_REPLACED,
  SWEEP_INTERVAL_MS,
} from "../../shared/tunnel/frame.ts";
import type { Clock } from "../../shared/wireguard/clock.ts";
import {
  type Connection,
  createConnection,
  type NodeConnection,
  type NodeTraffic,
  type UplinkConnection,
} from "./connection.ts";
import type { HubLimits } from "./hub.ts";
import type { HubMetrics } from "./metrics.ts";
import type { HubSocket, SocketAttachment } from "./socket.ts";

/** What the rest of the hub learns from the registry. */
export interface RegistryEvents {
  /** A connection is gone, closed by either side; called once per connection. */
  connectionGone(connection: Connection): void;
  /** The network's uplink is gone (not called for an uplink that lost to a newer one). */
  uplinkGone(): void;
}

export interface RegistryOptions {
  readonly limits: HubLimits;
  readonly clock: Clock;
  readonly metrics: HubMetrics;
  readonly events: RegistryEvents;
}

const MAX_CLOSE_REASON_BYTES = 123;
const UPLINK_REPLACED = "uplink replaced by a newer connection";

export class Registry {
  readonly #limits: HubLimits;
  readonly #clock: Clock;
  readonly #metrics: HubMetrics;
  readonly #events: RegistryEvents;
  readonly #connections = new Map<HubSocket, Connection>();
  readonly #nodes = new Map<string, NodeConnection>();
  #uplink: UplinkConnection | undefined;
  /** Traffic of nodes that left since the last drain, so none is lost. */
  #departed: NodeTraffic[] = [];

  constructor(options: RegistryOptions) {
    this.#limits = options.limits;
    this.#clock = options.clock;
    this.#metrics = options.metrics;
    this.#events = options.events;
  }

  /** The open uplink, ready or not. */
  get uplink(): UplinkConnection | undefined {
    return this.#uplink;
  }

  get nodeCount(): number {
    return this.#nodes.size;
  }

  /** The connection of an attached socket. */
  connection(socket: HubSocket): Connection | undefined {
    return this.#connections.get(socket);
  }

  /** The open node stream whose tag has this key (tagKey). */
  node(key: string): NodeConnection | undefined {
    return this.#nodes.get(key);
  }

  /** Registers a newly accepted socket, closing the one it replaces. */
  attach(socket: HubSocket, attachment: SocketAttachment): void {
    socket.persist(attachment);
    const connection = this.#register(socket, attachment);
    if (connection.role === "node") {
      const previous = this.#nodes.get(connection.tagKey);
      if (previous) this.drop(previous, CloseCode.Replaced, REASON_PEER_REPLACED);
      this.#nodes.set(connection.tagKey, connection);
    } else {
      if (this.#uplink) this.drop(this.#uplink, CloseCode.Replaced, UPLINK_REPLACED);
      this.#uplink = connection;
    }
  }

  /**
   * Registers sockets the runtime kept while the hub was gone. Nothing is sent; of duplicates
   * (a replacement that raced the eviction) the newest stays and the others are closed as
   * replaced.
   */
  restore(sockets: Iterable<readonly [HubSocket, SocketAttachment]>): void {
    for (const [socket, attachment] of sockets) {
      if (this.#connections.has(socket)) continue;
      const connection = this.#register(socket, attachment);
      if (connection.role === "node") {
        const [winner, loser] = newer(this.#nodes.get(connection.tagKey), connection);
        this.#nodes.set(connection.tagKey, winner);
        if (loser) this.drop(loser, CloseCode.Replaced, REASON_PEER_REPLACED);
      } else {
        // An uplink that had said HELLO got its peer list before the hub went away.
        connection.ready = connection.attachment.serverPublicKey !== null;
        const [winner, loser] = newer(this.#uplink, connection);
        this.#uplink = winner;
        if (loser) this.drop(loser, CloseCode.Replaced, UPLINK_REPLACED);
      }
    }
  }

  /** Closes the socket and forgets the connection. */
  drop(connection: Connection, code: number, reason: string): void {
    this.forget(connection);
    connection.socket.close(code, truncateReason(reason));
  }

  /** Forgets the connection (its socket closed); what its backlog held counts as dropped. */
  forget(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    this.#metrics.drops.stream_closed += connection.queue.length;
    connection.queue.clear();
    this.#events.connectionGone(connection);
    this.#connections.delete(connection.socket);
    if (connection.role === "node") {
      if (this.#nodes.get(connection.tagKey) === connection) this.#nodes.delete(connection.tagKey);
      const traffic = connection.traffic;
      if (traffic.rxPackets + traffic.txPackets > 0) this.#departed.push(traffic);
    } else if (this.#uplink === connection) {
      this.#uplink = undefined;
      this.#events.uplinkGone();
    }
  }

  /** Closes every stream silent for longer than the liveness timeout. */
  sweep(): void {
    const now = this.#clock.wallNow();
    const limitMs = this.#limits.livenessTimeoutMs;
    for (const connection of [...this.#connections.values()]) {
      const lastSeen = Math.max(connection.lastSeen, connection.socket.lastPingAt ?? 0);
      if (now - lastSeen > limitMs) {
        this.#metrics.livenessTimeouts++;
        this.drop(
          connection,
          CloseCode.LivenessTimeout,
          `nothing received for ${Math.round((now - lastSeen) / 1000)} s (limit ${limitMs / 1000} s): send "${PING_TEXT}" every ${PING_INTERVAL_MS / 1000} s`,
        );
      }
    }
  }

  /** Per-node traffic since the last call. */
  drainTraffic(): NodeTraffic[] {
    const drained = this.#departed;
    this.#departed = [];
    for (const node of this.#nodes.values()) {
      const traffic = node.traffic;
      if (traffic.rxPackets + traffic.txPackets === 0) continue;
      drained.push({ ...traffic });
      traffic.rxBytes = traffic.txBytes = traffic.rxPackets = traffic.txPackets = 0;
    }
    return drained;
  }

  closeAll(code: number, reason: string): void {
    for (const connection of [...this.#connections.values()]) this.drop(connection, code, reason);
  }

  #register(socket: HubSocket, attachment: SocketAttachment): Connection {
    const connection = createConnection(socket, attachment, this.#limits, this.#clock.wallNow());
    this.#connections.set(socket, connection);
    return connection;
  }
}

/**
 * How often a runtime runs `sweep` for a liveness timeout: every SWEEP_INTERVAL_MS, or four times
 * per timeout where a shorter one is configured, so that one is kept as closely.
 */
export function sweepIntervalMs(livenessTimeoutMs: number): number {
  return Math.min(SWEEP_INTERVAL_MS, livenessTimeoutMs / 4);
}

/** Of two connections for one place, the one connected later won when both were live. */
function newer<T extends Connection>(current: T | undefined, candidate: T): [T, T | undefined] {
  return current && current.attachment.connectedAt > candidate.attachment.connectedAt
    ? [current, candidate]
    : [candidate, current];
}

/** A WebSocket close reason fits 123 bytes of UTF-8: longer ones are cut at a character. */
function truncateReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  let end = MAX_CLOSE_REASON_BYTES - 3;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return `${new TextDecoder().decode(bytes.subarray(0, end))}...`;
}
