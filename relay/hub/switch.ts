/**
 * The per-message packet switch of one network:
 *
 *   node stream --NODE_DATAGRAMS--> hub --PEER_DATAGRAMS (tag = node's virtual address)--> uplink
 *   uplink --PEER_DATAGRAMS--> hub --NODE_DATAGRAMS--> the node stream that owns the tag
 *
 * Nodes never reach each other, and a stream that does not own its address (a candidate,
 * ownership.ts) sends only handshake initiations and gets only the answers to them. Every
 * datagram that is not forwarded is counted by reason. Each
 * incoming message is switched in one pass: datagrams are gathered per destination as views into
 * the message, then each destination's socket gets them in one call, and frames them for its
 * transport. A congested destination (bufferedAmount above the high-water mark) keeps a short
 * drop-oldest backlog instead, retried every `retryMs`.
 */
import { equalBytes } from "../../shared/bytes.ts";
import {
  decodeNodeDatagrams,
  decodePeerDatagrams,
  FrameError,
} from "../../shared/tunnel/decode.ts";
import type { Clock } from "../../shared/wireguard/clock.ts";
import { isWellFormedMessage, MessageType } from "../../shared/wireguard/constants.ts";
import {
  type Connection,
  type NodeConnection,
  tagKey,
  type UplinkConnection,
} from "./connection.ts";
import type { HubLimits } from "./hub.ts";
import type { HubMetrics } from "./metrics.ts";
import { answeredIndex } from "./ownership.ts";
import type { AddressSlot, Registry } from "./registry.ts";

export interface PacketSwitchOptions {
  readonly registry: Registry;
  readonly limits: HubLimits;
  readonly clock: Clock;
  readonly metrics: HubMetrics;
}

export class PacketSwitch {
  readonly #registry: Registry;
  readonly #limits: HubLimits;
  readonly #clock: Clock;
  readonly #metrics: HubMetrics;
  /** Decoded views of the message being switched, reused across messages. */
  readonly #datagrams: Uint8Array[] = [];
  readonly #tags: Uint8Array[] = [];
  /** Destinations that gathered datagrams from the message being switched. */
  readonly #touched: Connection[] = [];
  readonly #congested = new Set<Connection>();
  /** A congested destination's backlog followed by what the message brought it. */
  readonly #backlog: Uint8Array[] = [];
  readonly #backlogTags: Uint8Array[] = [];
  #retryScheduled = false;

  constructor(options: PacketSwitchOptions) {
    this.#registry = options.registry;
    this.#limits = options.limits;
    this.#clock = options.clock;
    this.#metrics = options.metrics;
  }

  /** Datagrams waiting in congested destinations' backlogs. */
  get queuedDatagrams(): number {
    let total = 0;
    for (const connection of this.#congested) total += connection.queue.length;
    return total;
  }

  /** A NODE_DATAGRAMS frame from a node stream. */
  nodeFrame(node: NodeConnection, frame: Uint8Array): void {
    const count = decodeNodeDatagrams(frame, this.#datagrams);
    this.fromNode(node, this.#datagrams, count);
  }

  /** The first `count` of `datagrams` from a node stream, to the uplink. */
  fromNode(node: NodeConnection, datagrams: readonly Uint8Array[], count: number): void {
    const { traffic, bucket } = node;
    traffic.lastSeen = node.lastSeen;
    bucket.refill(node.lastSeen);
    const uplink = this.#registry.uplink?.ready ? this.#registry.uplink : undefined;
    for (let i = 0; i < count; i++) {
      const datagram = datagrams[i];
      traffic.txPackets++;
      traffic.txBytes += datagram.length;
      if (!bucket.take()) {
        this.#metrics.drops.rate_limited++;
      } else if (!isWellFormedMessage(datagram)) {
        this.#metrics.drops.not_wireguard++;
      } else if (datagram[0] !== MessageType.Initiation && !node.owner) {
        this.#metrics.drops.unproven++;
      } else if (!uplink) {
        this.#metrics.drops.no_uplink++;
      } else {
        if (datagram[0] === MessageType.Initiation) {
          node.initiations.record(datagram);
          if (!node.owner) this.#registry.candidateInitiated(node);
        }
        this.#metrics.nodeToUplinkDatagrams++;
        this.#metrics.nodeToUplinkBytes += datagram.length;
        if (uplink.pendingCount === 0) this.#touched.push(uplink);
        uplink.pending[uplink.pendingCount] = datagram;
        uplink.pendingTags[uplink.pendingCount] = node.tag;
        uplink.pendingCount++;
      }
    }
    this.#flushTouched();
  }

  /** A PEER_DATAGRAMS frame from the uplink, to the nodes its tags name. */
  uplinkFrame(uplink: UplinkConnection, frame: Uint8Array): void {
    if (!uplink.ready) throw new FrameError("unexpected_type", "datagrams before HELLO");
    const count = decodePeerDatagrams(frame, this.#tags, this.#datagrams);
    let slot: AddressSlot | undefined;
    for (let i = 0; i < count; i++) {
      const tag = this.#tags[i];
      const datagram = this.#datagrams[i];
      // Batches usually run several datagrams for one node: reuse the last lookup when the tag
      // bytes match, which spares building a key string per datagram.
      if (!slot || !equalBytes(tag, slot.tag)) slot = this.#registry.slot(tagKey(tag));
      if (!slot) {
        this.#metrics.drops.unknown_peer++;
        continue;
      }
      if (!isWellFormedMessage(datagram)) {
        this.#metrics.drops.not_wireguard++;
        continue;
      }
      const node =
        slot.candidates.length === 0 ? slot.owner : this.#handshakeDestination(slot, datagram);
      if (!node) {
        this.#metrics.drops.unproven++;
        continue;
      }
      this.#metrics.uplinkToNodeDatagrams++;
      this.#metrics.uplinkToNodeBytes += datagram.length;
      node.traffic.rxPackets++;
      node.traffic.rxBytes += datagram.length;
      if (node.pendingCount === 0) this.#touched.push(node);
      node.pending[node.pendingCount] = datagram;
      node.pendingCount++;
    }
    this.#flushTouched();
  }

  /**
   * Where a datagram for an address with candidates goes: the answer to a candidate's initiation
   * goes to that candidate, and a handshake response makes it the owner (ownership.ts);
   * everything else, and answers to the owner's own initiations, go to the owner.
   */
  #handshakeDestination(slot: AddressSlot, datagram: Uint8Array): NodeConnection | undefined {
    const index = answeredIndex(datagram);
    if (index === undefined || slot.owner?.initiations.has(index)) return slot.owner;
    const candidate = slot.candidates.find((c) => c.initiations.has(index));
    if (!candidate) return slot.owner;
    if (datagram[0] === MessageType.Response) this.#registry.promote(slot, candidate);
    return candidate;
  }

  /** The connection is gone: nothing more is retried for it. */
  forget(connection: Connection): void {
    this.#congested.delete(connection);
  }

  #flushTouched(): void {
    for (const destination of this.#touched) this.#flush(destination);
    this.#touched.length = 0;
  }

  /** Sends the destination's backlog and gathered datagrams, or queues them while congested. */
  #flush(destination: Connection): void {
    const count = destination.pendingCount;
    destination.pendingCount = 0;
    const { socket, queue, pending } = destination;
    const tags = destination.role === "uplink" ? destination.pendingTags : undefined;
    if (destination.closed || socket.writable === false) {
      this.#metrics.drops.stream_closed += count + queue.length;
      queue.clear();
      this.#congested.delete(destination);
      return;
    }
    if (socket.bufferedAmount > this.#limits.highWaterBytes) {
      for (let i = 0; i < count; i++)
        this.#metrics.drops.queue_full += queue.push(pending[i], tags?.[i]);
      this.#markCongested(destination);
      return;
    }
    if (queue.length === 0) {
      if (count > 0) socket.sendDatagrams(pending, tags, count);
    } else {
      // The backlog goes out first, in the same call as what this message brought.
      const backlog = this.#backlog;
      const backlogTags = this.#backlogTags;
      const queued = queue.moveInto(backlog, backlogTags);
      for (let i = 0; i < count; i++) {
        backlog[queued + i] = pending[i];
        if (tags) backlogTags[queued + i] = tags[i];
      }
      socket.sendDatagrams(backlog, tags && backlogTags, queued + count);
      // Let go of the backlog's copies.
      backlog.length = 0;
      backlogTags.length = 0;
    }
    this.#congested.delete(destination);
  }

  #markCongested(destination: Connection): void {
    this.#congested.add(destination);
    if (this.#retryScheduled) return;
    this.#retryScheduled = true;
    this.#clock.setTimeout(this.#retry, this.#limits.retryMs);
  }

  readonly #retry = (): void => {
    this.#retryScheduled = false;
    for (const connection of [...this.#congested]) {
      if (connection.closed) this.#congested.delete(connection);
      else this.#flush(connection);
    }
  };
}
