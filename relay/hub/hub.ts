/**
 * The packet switch of one network. It holds the network's server uplink (at most one) and its
 * node streams (keyed by virtual address), and moves WireGuard ciphertext between them:
 *
 *   node stream --NODE_DATAGRAMS--> hub --PEER_DATAGRAMS (tag = node's virtual address)--> uplink
 *   uplink --PEER_DATAGRAMS--> hub --NODE_DATAGRAMS--> the node stream that owns the tag
 *
 * Nodes never reach each other. Every datagram that is not forwarded is counted by reason.
 * Each incoming message is switched in one pass: datagrams are gathered per destination as
 * views into the message, then each destination gets one batch frame. A congested destination
 * (bufferedAmount above the high-water mark) keeps a short drop-oldest backlog instead.
 *
 * The hub keeps no state that a runtime cannot rebuild: a Durable Object that wakes from
 * hibernation calls `restore` with its accepted sockets and their attachments.
 */

import { parseIPv6 } from "../../shared/net/ip.ts";
import { formatKey } from "../../shared/siderolink/keys.ts";
import {
  decodeControl,
  decodeNodeDatagrams,
  decodePeerDatagrams,
  FrameError,
  frameType,
  type PeerEntry,
} from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodePeerEvent, encodePeerList } from "../../shared/tunnel/encode.ts";
import {
  CloseCode,
  FrameType,
  LIVENESS_TIMEOUT_MS,
  PING_INTERVAL_MS,
  PING_TEXT,
  PONG_TEXT,
  PROTOCOL_VERSION,
  REASON_PEER_REPLACED,
  TAG_SIZE,
} from "../../shared/tunnel/frame.ts";
import { isWellFormedMessage } from "../../shared/wireguard/constants.ts";
import { AckWaiters } from "./acks.ts";
import { createHubMetrics, type HubMetrics } from "./metrics.ts";
import { DatagramQueue, type QueueLimits } from "./queue.ts";
import type { HubSocket, SocketAttachment, UplinkAttachment } from "./socket.ts";

export interface HubLimits {
  /** Backlog of each node stream while congested. */
  readonly nodeQueue: QueueLimits;
  /** Backlog of the uplink, which carries every node's traffic. */
  readonly uplinkQueue: QueueLimits;
  /** bufferedAmount above which a socket counts as congested. */
  readonly highWaterBytes: number;
  /** How long `addPeer` waits for the uplink's ACK. */
  readonly ackTimeoutMs: number;
  /** Silence after which `sweep` closes a stream. */
  readonly livenessTimeoutMs: number;
  /** How often a congested destination is retried. */
  readonly retryMs: number;
  /**
   * Token bucket of each node stream: datagrams it may send at once, and regains per second.
   * One node cannot starve the uplink that all nodes of its network share.
   */
  readonly nodeBurst: number;
  readonly nodeDatagramsPerSecond: number;
}

export const DEFAULT_HUB_LIMITS: HubLimits = {
  nodeQueue: { datagrams: 128, bytes: 256 * 1024 },
  uplinkQueue: { datagrams: 1024, bytes: 2 * 1024 * 1024 },
  highWaterBytes: 1024 * 1024,
  ackTimeoutMs: 5_000,
  livenessTimeoutMs: LIVENESS_TIMEOUT_MS,
  retryMs: 20,
  // A WireGuard peer at 500 Mbit/s of 1,400-byte packets sends about 45k datagrams a second.
  nodeBurst: 16_384,
  nodeDatagramsPerSecond: 65_536,
};

/** What the hub needs from the rest of the relay. */
export interface HubHooks {
  /**
   * An uplink said HELLO: persist the server key and return every peer of the network, which the
   * hub sends to the uplink as its PEER_LIST.
   */
  uplinkHello(serverPublicKey: string): Promise<readonly PeerEntry[]>;
}

export interface HubOptions {
  readonly hooks: HubHooks;
  readonly limits?: Partial<HubLimits>;
  /** Milliseconds since the epoch; injected by tests. */
  readonly now?: () => number;
}

/** How `addPeer` ended: the uplink applied the peer, or the wait ended without that. */
export type AckResult = "acked" | "timeout" | "uplink_gone";

/** Raised by `addPeer` when no uplink is ready to take the peer. */
export class NoUplinkError extends Error {
  override readonly name = "NoUplinkError";
}

/** Traffic of one node since the last `drainTraffic`, seen from the node (rx = to the node). */
export interface NodeTraffic {
  readonly virtualAddress: string;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  lastSeen: number;
}

interface Connection {
  readonly socket: HubSocket;
  attachment: SocketAttachment;
  /** Node: its 16-byte virtual address. Uplink: empty. */
  readonly tag: Uint8Array;
  readonly tagKey: string;
  readonly queue: DatagramQueue;
  /** Datagrams for this destination gathered from the message being switched (views). */
  readonly pending: Uint8Array[];
  readonly pendingTags: Uint8Array[];
  pendingCount: number;
  lastSeen: number;
  /** Uplink: HELLO handled and PEER_LIST sent. */
  ready: boolean;
  traffic: NodeTraffic | undefined;
  /** Node: datagrams it may still send now, refilled by time on each message. */
  tokens: number;
  tokensAt: number;
  closed: boolean;
}

const MAX_CLOSE_REASON_BYTES = 123;
const UPLINK_REPLACED = "uplink replaced by a newer connection";

export class Hub {
  readonly metrics: HubMetrics = createHubMetrics();
  readonly #hooks: HubHooks;
  readonly #limits: HubLimits;
  readonly #now: () => number;
  readonly #connections = new Map<HubSocket, Connection>();
  readonly #nodes = new Map<string, Connection>();
  #uplink: Connection | undefined;
  readonly #nodeEncoder = createBatchEncoder(false);
  readonly #peerEncoder = createBatchEncoder(true);
  /** Decoded views of the message being switched, reused across messages. */
  readonly #datagrams: Uint8Array[] = [];
  readonly #tags: Uint8Array[] = [];
  readonly #touched: Connection[] = [];
  readonly #congested = new Set<Connection>();
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #seq = 0;
  readonly #acks = new AckWaiters(() => {
    this.metrics.ackTimeouts++;
  });
  /** Traffic of nodes that left since the last drain, so none is lost. */
  #departed: NodeTraffic[] = [];

  constructor(options: HubOptions) {
    this.#hooks = options.hooks;
    this.#limits = { ...DEFAULT_HUB_LIMITS, ...options.limits };
    this.#now = options.now ?? Date.now;
  }

  /** Node streams open now. */
  get nodeCount(): number {
    return this.#nodes.size;
  }

  /** Uplinks open now (0 or 1), ready or not. */
  get uplinkCount(): number {
    return this.#uplink ? 1 : 0;
  }

  /** Whether an uplink has said HELLO and received its peer list. */
  get hasUplink(): boolean {
    return this.#uplink?.ready === true;
  }

  /** Datagrams waiting in congested destinations' backlogs. */
  get queuedDatagrams(): number {
    let total = 0;
    for (const connection of this.#congested) total += connection.queue.length;
    return total;
  }

  /** Whether a node stream for this virtual address is open. */
  hasNode(virtualAddress: string): boolean {
    return this.#nodes.has(tagKey(parseIPv6(virtualAddress)));
  }

  /**
   * Takes a newly accepted socket. A node stream replaces an open stream for the same virtual
   * address, which is closed with "peer replaced"; an uplink replaces the open uplink.
   */
  attach(socket: HubSocket, attachment: SocketAttachment): void {
    socket.persist(attachment);
    const connection = this.#register(socket, attachment);
    if (attachment.role === "node") {
      const previous = this.#nodes.get(connection.tagKey);
      if (previous) this.#drop(previous, CloseCode.Replaced, REASON_PEER_REPLACED);
      this.#nodes.set(connection.tagKey, connection);
    } else {
      if (this.#uplink) this.#drop(this.#uplink, CloseCode.Replaced, UPLINK_REPLACED);
      this.#uplink = connection;
    }
  }

  /**
   * Rebuilds the registry from sockets the runtime kept while the hub was gone (a Durable
   * Object waking from hibernation). Nothing is sent; of duplicates (a replacement that raced
   * the eviction) the newest stays and the others are closed as replaced.
   */
  restore(sockets: Iterable<readonly [HubSocket, SocketAttachment]>): void {
    for (const [socket, attachment] of sockets) {
      if (this.#connections.has(socket)) continue;
      const connection = this.#register(socket, attachment);
      if (attachment.role === "uplink") connection.ready = attachment.serverPublicKey !== null;
      const current =
        attachment.role === "node" ? this.#nodes.get(connection.tagKey) : this.#uplink;
      // Of two sockets for one place, the one connected later won when both were live.
      const [winner, loser] =
        current && current.attachment.connectedAt > attachment.connectedAt
          ? [current, connection]
          : [connection, current];
      if (attachment.role === "node") this.#nodes.set(connection.tagKey, winner);
      else this.#uplink = winner;
      if (loser) {
        const reason = attachment.role === "node" ? REASON_PEER_REPLACED : UPLINK_REPLACED;
        this.#drop(loser, CloseCode.Replaced, reason);
      }
    }
  }

  /** A message arrived on a socket: a binary frame or a text ping. */
  message(socket: HubSocket, data: Uint8Array | string): void {
    const connection = this.#connections.get(socket);
    if (!connection) return;
    connection.lastSeen = this.#now();
    if (typeof data === "string") {
      if (data === PING_TEXT) socket.send(PONG_TEXT);
      else this.#malformed(connection, `unexpected text message (only "${PING_TEXT}" is allowed)`);
      return;
    }
    try {
      if (connection.attachment.role === "node") this.#fromNode(connection, data);
      else this.#fromUplink(connection, data);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      this.#malformed(connection, error.message, error.closeCode);
    }
  }

  /**
   * Datagrams from a node stream that carries one datagram per message (gRPC CreateStream):
   * the first `count` entries of `datagrams`, switched like a NODE_DATAGRAMS frame.
   */
  nodeDatagrams(socket: HubSocket, datagrams: readonly Uint8Array[], count: number): void {
    const connection = this.#connections.get(socket);
    if (connection?.attachment.role !== "node") return;
    connection.lastSeen = this.#now();
    this.#switchFromNode(connection, datagrams, count);
  }

  /** The runtime saw the socket close or fail. */
  closed(socket: HubSocket): void {
    const connection = this.#connections.get(socket);
    if (connection) this.#forget(connection);
  }

  /**
   * Tells the uplink about a new or changed peer and waits (up to ackTimeoutMs) for its ACK.
   * Throws NoUplinkError when no uplink is ready.
   */
  addPeer(peer: PeerEntry): Promise<AckResult> {
    const uplink = this.#uplink;
    if (!uplink?.ready)
      throw new NoUplinkError("the management server is not connected to the relay");
    const seq = this.#nextSeq();
    const acked = this.#acks.wait(seq, this.#limits.ackTimeoutMs);
    uplink.socket.send(encodePeerEvent(FrameType.PeerAdded, seq, peer));
    return acked;
  }

  /**
   * Forgets a peer: the uplink (if any) is told, and the node's stream (if open) is closed
   * with `reason`. Does not wait for the ACK.
   */
  removePeer(peer: PeerEntry, reason: string): void {
    const uplink = this.#uplink;
    if (uplink?.ready)
      uplink.socket.send(encodePeerEvent(FrameType.PeerRemoved, this.#nextSeq(), peer));
    const node = this.#nodes.get(tagKey(peer.virtualAddress));
    if (node) this.#drop(node, CloseCode.PeerRemoved, reason);
  }

  /** Closes every stream silent for longer than the liveness timeout; call every ~10 s. */
  sweep(): void {
    const now = this.#now();
    for (const connection of [...this.#connections.values()]) {
      const lastSeen = Math.max(connection.lastSeen, connection.socket.lastPingAt ?? 0);
      if (now - lastSeen > this.#limits.livenessTimeoutMs) {
        this.metrics.livenessTimeouts++;
        this.#drop(
          connection,
          CloseCode.LivenessTimeout,
          `nothing received for ${Math.round((now - lastSeen) / 1000)} s (limit ${this.#limits.livenessTimeoutMs / 1000} s): send "${PING_TEXT}" every ${PING_INTERVAL_MS / 1000} s`,
        );
      }
    }
  }

  /** Per-node traffic since the last call, for the runtime to add to the store's counters. */
  drainTraffic(): NodeTraffic[] {
    const drained = this.#departed;
    this.#departed = [];
    for (const node of this.#nodes.values()) {
      const traffic = node.traffic!;
      if (traffic.rxPackets + traffic.txPackets === 0) continue;
      drained.push({ ...traffic });
      traffic.rxBytes = traffic.txBytes = traffic.rxPackets = traffic.txPackets = 0;
    }
    return drained;
  }

  /** Closes every stream (shutdown). */
  closeAll(code: number, reason: string): void {
    for (const connection of [...this.#connections.values()]) this.#drop(connection, code, reason);
  }

  #register(socket: HubSocket, attachment: SocketAttachment): Connection {
    const tag =
      attachment.role === "node" ? parseIPv6(attachment.virtualAddress) : new Uint8Array(0);
    const limits = attachment.role === "node" ? this.#limits.nodeQueue : this.#limits.uplinkQueue;
    const now = this.#now();
    const connection: Connection = {
      socket,
      attachment,
      tag,
      tagKey: tagKey(tag),
      queue: new DatagramQueue(limits),
      pending: [],
      pendingTags: [],
      pendingCount: 0,
      lastSeen: now,
      ready: false,
      traffic:
        attachment.role === "node"
          ? {
              virtualAddress: attachment.virtualAddress,
              rxBytes: 0,
              txBytes: 0,
              rxPackets: 0,
              txPackets: 0,
              lastSeen: now,
            }
          : undefined,
      tokens: this.#limits.nodeBurst,
      tokensAt: now,
      closed: false,
    };
    this.#connections.set(socket, connection);
    return connection;
  }

  #fromNode(connection: Connection, frame: Uint8Array): void {
    const count = decodeNodeDatagrams(frame, this.#datagrams);
    this.#switchFromNode(connection, this.#datagrams, count);
  }

  #switchFromNode(connection: Connection, datagrams: readonly Uint8Array[], count: number): void {
    const traffic = connection.traffic!;
    traffic.lastSeen = connection.lastSeen;
    const uplink = this.#uplink?.ready ? this.#uplink : undefined;
    const elapsed = connection.lastSeen - connection.tokensAt;
    if (elapsed > 0) {
      connection.tokens = Math.min(
        this.#limits.nodeBurst,
        connection.tokens + (elapsed * this.#limits.nodeDatagramsPerSecond) / 1000,
      );
      connection.tokensAt = connection.lastSeen;
    }
    for (let i = 0; i < count; i++) {
      const datagram = datagrams[i];
      traffic.txPackets++;
      traffic.txBytes += datagram.length;
      if (connection.tokens < 1) {
        this.metrics.drops.rate_limited++;
        continue;
      }
      connection.tokens--;
      if (!isWellFormedMessage(datagram)) {
        this.metrics.drops.not_wireguard++;
      } else if (!uplink) {
        this.metrics.drops.no_uplink++;
      } else {
        this.metrics.nodeToUplinkDatagrams++;
        this.metrics.nodeToUplinkBytes += datagram.length;
        this.#gather(uplink, datagram, connection.tag);
      }
    }
    this.#flushTouched();
  }

  #fromUplink(connection: Connection, frame: Uint8Array): void {
    const type = frameType(frame);
    if (type === FrameType.PeerDatagrams) {
      if (!connection.ready) throw new FrameError("unexpected_type", "datagrams before HELLO");
      const count = decodePeerDatagrams(frame, this.#tags, this.#datagrams);
      this.#switchFromUplink(count);
      return;
    }
    const message = decodeControl(frame);
    switch (message.type) {
      case FrameType.Hello:
        if (
          connection.attachment.role !== "uplink" ||
          connection.attachment.serverPublicKey !== null
        ) {
          throw new FrameError("unexpected_type", "second HELLO on one uplink");
        }
        if (message.version !== PROTOCOL_VERSION) {
          this.#drop(
            connection,
            CloseCode.UnsupportedVersion,
            `protocol version ${message.version} is not supported; this relay speaks ${PROTOCOL_VERSION}`,
          );
          return;
        }
        this.#hello(connection, formatKey(message.serverPublicKey));
        return;
      case FrameType.Ack:
        if (this.#acks.ack(message.seq)) this.metrics.acks++;
        return;
      case FrameType.PeerAdded:
      case FrameType.PeerRemoved:
      case FrameType.PeerList:
        throw new FrameError(
          "unexpected_type",
          `frame type 0x${message.type.toString(16)} goes from the relay to the uplink, not back`,
        );
    }
  }

  #hello(connection: Connection, serverPublicKey: string): void {
    const attachment: UplinkAttachment = {
      ...(connection.attachment as UplinkAttachment),
      serverPublicKey,
    };
    connection.attachment = attachment;
    this.#hooks.uplinkHello(serverPublicKey).then(
      (peers) => {
        if (connection.closed) return;
        for (const chunk of encodePeerList(this.#nextSeq(), peers)) connection.socket.send(chunk);
        connection.ready = true;
        connection.socket.persist(attachment);
      },
      (error: unknown) => {
        this.#drop(
          connection,
          CloseCode.Unauthorized,
          `uplink refused: ${error instanceof Error ? error.message : String(error)}`,
        );
      },
    );
  }

  #switchFromUplink(count: number): void {
    let last: Connection | undefined;
    for (let i = 0; i < count; i++) {
      const tag = this.#tags[i];
      const datagram = this.#datagrams[i];
      // Batches usually run several datagrams for one node: reuse the last lookup when the tag
      // bytes match, which spares building a key string per datagram.
      if (!last || !sameBytes(tag, last.tag)) {
        last = this.#nodes.get(tagKey(tag));
      }
      if (!last) {
        this.metrics.drops.unknown_peer++;
        continue;
      }
      if (!isWellFormedMessage(datagram)) {
        this.metrics.drops.not_wireguard++;
        continue;
      }
      this.metrics.uplinkToNodeDatagrams++;
      this.metrics.uplinkToNodeBytes += datagram.length;
      const traffic = last.traffic!;
      traffic.rxPackets++;
      traffic.rxBytes += datagram.length;
      this.#gather(last, datagram, undefined);
    }
    this.#flushTouched();
  }

  #gather(destination: Connection, datagram: Uint8Array, tag: Uint8Array | undefined): void {
    if (destination.pendingCount === 0) this.#touched.push(destination);
    destination.pending[destination.pendingCount] = datagram;
    if (tag) destination.pendingTags[destination.pendingCount] = tag;
    destination.pendingCount++;
  }

  #flushTouched(): void {
    for (const destination of this.#touched) this.#flush(destination);
    this.#touched.length = 0;
  }

  /** Sends the destination's backlog and gathered datagrams, or queues them while congested. */
  #flush(destination: Connection): void {
    const count = destination.pendingCount;
    destination.pendingCount = 0;
    if (destination.closed || destination.socket.writable === false) {
      this.metrics.drops.stream_closed += count + destination.queue.length;
      destination.queue.clear();
      this.#congested.delete(destination);
      return;
    }
    if (destination.socket.bufferedAmount > this.#limits.highWaterBytes) {
      for (let i = 0; i < count; i++) {
        const dropped = destination.queue.push(
          destination.pending[i],
          destination.attachment.role === "uplink" ? destination.pendingTags[i] : undefined,
        );
        this.metrics.drops.queue_full += dropped;
      }
      this.#markCongested(destination);
      return;
    }
    const tagged = destination.attachment.role === "uplink";
    const encoder = tagged ? this.#peerEncoder : this.#nodeEncoder;
    const queue = destination.queue;
    while (queue.length > 0) {
      if (!encoder.add(queue.peekData(), queue.peekTag()))
        destination.socket.send(encoder.finish());
      else queue.shift();
    }
    for (let i = 0; i < count; i++) {
      const tag = tagged ? destination.pendingTags[i] : undefined;
      if (!encoder.add(destination.pending[i], tag)) {
        destination.socket.send(encoder.finish());
        encoder.add(destination.pending[i], tag);
      }
    }
    if (encoder.count > 0) destination.socket.send(encoder.finish());
    this.#congested.delete(destination);
  }

  #markCongested(destination: Connection): void {
    this.#congested.add(destination);
    if (this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      for (const connection of [...this.#congested]) {
        if (connection.closed) this.#congested.delete(connection);
        else this.#flush(connection);
      }
    }, this.#limits.retryMs);
  }

  #malformed(connection: Connection, reason: string, code: number = CloseCode.Malformed): void {
    this.metrics.malformedFrames++;
    this.#drop(connection, code, reason);
  }

  /** Closes the socket and forgets the connection. */
  #drop(connection: Connection, code: number, reason: string): void {
    this.#forget(connection);
    connection.socket.close(code, truncateReason(reason));
  }

  #forget(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    this.metrics.drops.stream_closed += connection.queue.length;
    connection.queue.clear();
    this.#congested.delete(connection);
    this.#connections.delete(connection.socket);
    if (connection.attachment.role === "node") {
      if (this.#nodes.get(connection.tagKey) === connection) this.#nodes.delete(connection.tagKey);
      const traffic = connection.traffic!;
      if (traffic.rxPackets + traffic.txPackets > 0) this.#departed.push(traffic);
    } else if (this.#uplink === connection) {
      this.#uplink = undefined;
      this.#acks.abandonAll();
    }
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }
}

/** Map key for a 16-byte tag: one UTF-16 unit per byte pair. */
function tagKey(tag: Uint8Array): string {
  if (tag.length === 0) return "";
  if (tag.length !== TAG_SIZE)
    throw new RangeError(`expected ${TAG_SIZE} bytes for tag, got ${tag.length}`);
  let key = "";
  for (let i = 0; i < TAG_SIZE; i += 2) key += String.fromCharCode((tag[i] << 8) | tag[i + 1]);
  return key;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function truncateReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  let end = MAX_CLOSE_REASON_BYTES - 3;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return `${new TextDecoder().decode(bytes.subarray(0, end))}...`;
}
