/**
 * Who is connected to one network's hub: its node streams, by virtual address, and its uplink
 * (at most one live). Each address has at most one owner and a few candidates (ownership.ts): a
 * new stream for an owned address waits as a candidate until `promote`. A new uplink waits
 * beside the live one until its HELLO passes the server-key pin (`promoteUplink`), and only then
 * replaces it. `sweep` closes streams gone silent and candidates that never proved themselves;
 * traffic counters of departed nodes are kept until drained.
 */

import { parseIPv6 } from "../../shared/net/ip.ts";
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
  tagKey,
  type UplinkConnection,
} from "./connection.ts";
import type { HubLimits } from "./hub.ts";
import type { HubMetrics } from "./metrics.ts";
import { REASON_CANDIDATE_DISPLACED } from "./ownership.ts";
import type { HubSocket, NodeAttachment, SocketAttachment } from "./socket.ts";

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

/** The streams of one virtual address: its owner, if any, and its candidates, oldest first. */
export interface AddressSlot {
  readonly tag: Uint8Array;
  owner: NodeConnection | undefined;
  readonly candidates: NodeConnection[];
}

const MAX_CLOSE_REASON_BYTES = 123;
const UPLINK_REPLACED = "uplink replaced by a newer connection";
/**
 * Uplinks connected but not yet through HELLO, beside the live one. Only holders of the uplink
 * secret get this far; a few cover a server restarting while its old connection lingers.
 */
export const MAX_PENDING_UPLINKS = 3;
const UPLINK_DISPLACED = "uplink displaced by a newer connection before its HELLO";

export class Registry {
  readonly #limits: HubLimits;
  readonly #clock: Clock;
  readonly #metrics: HubMetrics;
  readonly #events: RegistryEvents;
  readonly #connections = new Map<HubSocket, Connection>();
  readonly #slots = new Map<string, AddressSlot>();
  #nodeCount = 0;
  #uplink: UplinkConnection | undefined;
  /** Uplinks that have not passed HELLO yet, oldest first. */
  readonly #pendingUplinks: UplinkConnection[] = [];
  /** Traffic of nodes that left since the last drain, so none is lost. */
  #departed: NodeTraffic[] = [];

  constructor(options: RegistryOptions) {
    this.#limits = options.limits;
    this.#clock = options.clock;
    this.#metrics = options.metrics;
    this.#events = options.events;
  }

  /** The live uplink (its HELLO accepted), ready or not. */
  get uplink(): UplinkConnection | undefined {
    return this.#uplink;
  }

  /** Node streams open, owners and candidates. */
  get nodeCount(): number {
    return this.#nodeCount;
  }

  /** The connection of an attached socket. */
  connection(socket: HubSocket): Connection | undefined {
    return this.#connections.get(socket);
  }

  /** The owner of the address whose tag has this key (tagKey). */
  node(key: string): NodeConnection | undefined {
    return this.#slots.get(key)?.owner;
  }

  /** The streams of the address whose tag has this key (tagKey). */
  slot(key: string): AddressSlot | undefined {
    return this.#slots.get(key);
  }

  /**
   * Registers a newly accepted socket. A node stream owns a free address at once and is a
   * candidate for an owned one; an uplink waits for its HELLO (`promoteUplink`).
   */
  attach(socket: HubSocket, attachment: SocketAttachment): void {
    if (attachment.role === "node") {
      const owned = this.#slots.get(this.#keyOf(attachment))?.owner !== undefined;
      const { candidate: _, initiations: __, ...owner } = attachment;
      const stored: NodeAttachment = owned ? { ...owner, candidate: true } : owner;
      socket.persist(stored);
      this.#addNode(this.#register(socket, stored) as NodeConnection);
      return;
    }
    socket.persist(attachment);
    this.#addPendingUplink(this.#register(socket, attachment) as UplinkConnection);
  }

  /** An uplink's HELLO passed the pin: it becomes the live uplink, replacing the old one. */
  promoteUplink(uplink: UplinkConnection): void {
    const at = this.#pendingUplinks.indexOf(uplink);
    if (at >= 0) this.#pendingUplinks.splice(at, 1);
    const previous = this.#uplink;
    this.#uplink = uplink;
    if (previous && previous !== uplink) this.drop(previous, CloseCode.Replaced, UPLINK_REPLACED);
  }

  /** Closes the live uplink and those waiting for their HELLO. */
  dropUplinks(code: number, reason: string): void {
    for (const pending of [...this.#pendingUplinks]) this.drop(pending, code, reason);
    if (this.#uplink) this.drop(this.#uplink, code, reason);
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
        const slot = this.#slotFor(connection);
        this.#nodeCount++;
        if (!connection.owner) {
          this.#addCandidate(slot, connection);
          continue;
        }
        const [winner, loser] = newer(slot.owner, connection);
        slot.owner = winner;
        if (loser) this.drop(loser, CloseCode.Replaced, REASON_PEER_REPLACED);
      } else if (connection.attachment.serverPublicKey === null) {
        this.#addPendingUplink(connection);
      } else {
        // An uplink whose HELLO passed had its key and peer list before the hub went away.
        connection.ready = true;
        const [winner, loser] = newer(this.#uplink, connection);
        this.#uplink = winner;
        if (loser) this.drop(loser, CloseCode.Replaced, UPLINK_REPLACED);
      }
    }
    // Candidates whose owner did not come back inherit the address.
    for (const slot of this.#slots.values()) if (!slot.owner) this.#inherit(slot);
  }

  /**
   * A candidate proved it holds the node's key: it owns the address from now on, and the old
   * owner is closed as replaced.
   */
  promote(slot: AddressSlot, candidate: NodeConnection): void {
    const previous = slot.owner;
    this.#own(slot, candidate);
    if (previous) this.drop(previous, CloseCode.Replaced, REASON_PEER_REPLACED);
  }

  /** A candidate sent an initiation: its attachment keeps the indices across an eviction. */
  candidateInitiated(candidate: NodeConnection): void {
    const attachment = { ...candidate.attachment, initiations: candidate.initiations.values() };
    candidate.attachment = attachment;
    candidate.socket.persist(attachment);
  }

  /** Closes the address's owner and candidates. */
  dropAddress(key: string, code: number, reason: string): void {
    const slot = this.#slots.get(key);
    if (!slot) return;
    for (const candidate of [...slot.candidates]) this.drop(candidate, code, reason);
    if (slot.owner) this.drop(slot.owner, code, reason);
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
      this.#removeNode(connection);
      const traffic = connection.traffic;
      if (traffic.rxPackets + traffic.txPackets > 0) this.#departed.push(traffic);
    } else if (this.#uplink === connection) {
      this.#uplink = undefined;
      this.#events.uplinkGone();
    } else {
      const at = this.#pendingUplinks.indexOf(connection);
      if (at >= 0) this.#pendingUplinks.splice(at, 1);
    }
  }

  /**
   * Closes every stream silent for longer than the liveness timeout, and every candidate that has
   * not proven itself within candidateTimeoutMs.
   */
  sweep(): void {
    const now = this.#clock.wallNow();
    const limitMs = this.#limits.livenessTimeoutMs;
    const candidateMs = this.#limits.candidateTimeoutMs;
    for (const connection of [...this.#connections.values()]) {
      if (
        connection.role === "node" &&
        !connection.owner &&
        now - connection.attachment.connectedAt > candidateMs
      ) {
        this.drop(
          connection,
          CloseCode.LivenessTimeout,
          `no handshake answered within ${candidateMs / 1000} s while another stream holds this address`,
        );
        continue;
      }
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
    for (const slot of this.#slots.values()) {
      for (const node of [slot.owner, ...slot.candidates]) {
        const traffic = node?.traffic;
        if (!traffic || traffic.rxPackets + traffic.txPackets === 0) continue;
        drained.push({ ...traffic });
        traffic.rxBytes = traffic.txBytes = traffic.rxPackets = traffic.txPackets = 0;
      }
    }
    return drained;
  }

  closeAll(code: number, reason: string): void {
    for (const connection of [...this.#connections.values()]) this.drop(connection, code, reason);
  }

  #keyOf(attachment: NodeAttachment): string {
    return tagKey(parseIPv6(attachment.virtualAddress));
  }

  #slotFor(node: NodeConnection): AddressSlot {
    let slot = this.#slots.get(node.tagKey);
    if (!slot) {
      slot = { tag: node.tag, owner: undefined, candidates: [] };
      this.#slots.set(node.tagKey, slot);
    }
    return slot;
  }

  #addNode(node: NodeConnection): void {
    const slot = this.#slotFor(node);
    this.#nodeCount++;
    if (node.owner) slot.owner = node;
    else this.#addCandidate(slot, node);
  }

  #addPendingUplink(uplink: UplinkConnection): void {
    this.#pendingUplinks.push(uplink);
    if (this.#pendingUplinks.length > MAX_PENDING_UPLINKS) {
      this.drop(this.#pendingUplinks[0], CloseCode.Replaced, UPLINK_DISPLACED);
    }
  }

  #addCandidate(slot: AddressSlot, candidate: NodeConnection): void {
    slot.candidates.push(candidate);
    if (slot.candidates.length > this.#limits.maxCandidatesPerAddress) {
      this.drop(slot.candidates[0], CloseCode.Replaced, REASON_CANDIDATE_DISPLACED);
    }
  }

  #own(slot: AddressSlot, node: NodeConnection): void {
    const at = slot.candidates.indexOf(node);
    if (at >= 0) slot.candidates.splice(at, 1);
    slot.owner = node;
    if (node.owner) return;
    node.owner = true;
    const { candidate: _, initiations: __, ...attachment } = node.attachment;
    node.attachment = attachment;
    node.socket.persist(attachment);
  }

  /** The newest candidate, if any, takes the free address. */
  #inherit(slot: AddressSlot): void {
    const heir = slot.candidates.at(-1);
    if (heir) this.#own(slot, heir);
  }

  #removeNode(node: NodeConnection): void {
    this.#nodeCount--;
    const slot = this.#slots.get(node.tagKey);
    if (!slot) return;
    if (slot.owner === node) {
      slot.owner = undefined;
      this.#inherit(slot);
    } else {
      const at = slot.candidates.indexOf(node);
      if (at >= 0) slot.candidates.splice(at, 1);
    }
    if (!slot.owner && slot.candidates.length === 0) this.#slots.delete(node.tagKey);
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
