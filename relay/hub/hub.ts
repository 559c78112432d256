/**
 * One network's hub: it holds the network's server uplink (at most one) and its node streams,
 * and moves WireGuard ciphertext between them. This file composes the parts and is what the
 * runtimes call:
 *
 * - registry.ts: who is connected, replacement, the liveness sweep, traffic counters;
 * - ownership.ts: which stream may carry a node's address (owner and candidates);
 * - switch.ts: the per-message switch with its token buckets and congestion backlogs;
 * - uplink-control.ts: HELLO, the peer list and peer events, and their ACKs.
 *
 * The hub keeps no state that a runtime cannot rebuild: a Durable Object that wakes from
 * hibernation calls `restore` with its accepted sockets and their attachments.
 */
import { parseIPv6 } from "../../shared/net/ip.ts";
import { FrameError, frameType, type PeerEntry } from "../../shared/tunnel/decode.ts";
import {
  CloseCode,
  FrameType,
  LIVENESS_TIMEOUT_MS,
  PING_TEXT,
  PONG_TEXT,
} from "../../shared/tunnel/frame.ts";
import type { Clock } from "../../shared/wireguard/clock.ts";
import { type Connection, type NodeTraffic, tagKey } from "./connection.ts";
import { createHubMetrics, type HubMetrics } from "./metrics.ts";
import { CANDIDATE_TIMEOUT_MS, MAX_CANDIDATES_PER_ADDRESS } from "./ownership.ts";
import type { QueueLimits } from "./queue.ts";
import { Registry } from "./registry.ts";
import type { HubSocket, SocketAttachment } from "./socket.ts";
import { PacketSwitch } from "./switch.ts";
import { systemClock } from "./system-clock.ts";
import { UplinkControl } from "./uplink-control.ts";

export type { NodeTraffic } from "./connection.ts";
export { NoUplinkError, ServerKeyMismatchError } from "./uplink-control.ts";

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
  /** Candidate streams per address beside its owner (ownership.ts); the newest displaces the oldest. */
  readonly maxCandidatesPerAddress: number;
  /** How long a candidate may take to prove it holds the node's key before `sweep` closes it. */
  readonly candidateTimeoutMs: number;
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
  maxCandidatesPerAddress: MAX_CANDIDATES_PER_ADDRESS,
  candidateTimeoutMs: CANDIDATE_TIMEOUT_MS,
};

/** What the hub needs from the rest of the relay. */
export interface HubHooks {
  /**
   * An uplink said HELLO: pin its server key if none is pinned, and reject with
   * ServerKeyMismatchError when another one is (the uplink is then closed, and the live one
   * stays); any other rejection closes it as unauthorized.
   */
  uplinkHello(serverPublicKey: string): Promise<void>;
  /** Every peer of the network, which the hub sends to a newly live uplink as its PEER_LIST. */
  peers(): Promise<readonly PeerEntry[]>;
}

export interface HubOptions {
  readonly hooks: HubHooks;
  readonly limits?: Partial<HubLimits>;
  /**
   * Timers (ACK timeouts, congestion retries) and timestamps; injected by tests. The hub reads
   * `wallNow`, since its timestamps meet the runtime's (a Durable Object's ping times, the
   * attachments' connectedAt) and the store's last-seen times.
   */
  readonly clock?: Clock;
}

/** How `addPeer` ended: the uplink applied the peer, or the wait ended without that. */
export type AckResult = "acked" | "timeout" | "uplink_gone";

export class Hub {
  readonly metrics: HubMetrics = createHubMetrics();
  readonly #clock: Clock;
  readonly #registry: Registry;
  readonly #switch: PacketSwitch;
  readonly #control: UplinkControl;

  constructor(options: HubOptions) {
    const limits = { ...DEFAULT_HUB_LIMITS, ...options.limits };
    const clock = options.clock ?? systemClock;
    const { metrics } = this;
    this.#clock = clock;
    this.#registry = new Registry({
      limits,
      clock,
      metrics,
      events: {
        connectionGone: (connection) => this.#switch.forget(connection),
        uplinkGone: () => this.#control.uplinkGone(),
      },
    });
    const registry = this.#registry;
    this.#switch = new PacketSwitch({ registry, limits, clock, metrics });
    this.#control = new UplinkControl({ registry, hooks: options.hooks, limits, clock, metrics });
  }

  /** Node streams open now. */
  get nodeCount(): number {
    return this.#registry.nodeCount;
  }

  /** Live uplinks now (0 or 1), ready or not; those still before HELLO are not counted. */
  get uplinkCount(): number {
    return this.#registry.uplink ? 1 : 0;
  }

  /** Whether an uplink has said HELLO and received its peer list. */
  get hasUplink(): boolean {
    return this.#registry.uplink?.ready === true;
  }

  /** Datagrams waiting in congested destinations' backlogs. */
  get queuedDatagrams(): number {
    return this.#switch.queuedDatagrams;
  }

  /** Whether a stream owns this virtual address. */
  hasNode(virtualAddress: string): boolean {
    return this.#registry.node(tagKey(parseIPv6(virtualAddress))) !== undefined;
  }

  /**
   * Takes a newly accepted socket. A node stream owns a free address at once; for an owned one it
   * is a candidate until it proves it holds the node's key (ownership.ts), and only then is the
   * old owner closed with "peer replaced". An uplink replaces the live uplink only once its HELLO
   * passes the server-key pin.
   */
  attach(socket: HubSocket, attachment: SocketAttachment): void {
    this.#registry.attach(socket, attachment);
  }

  /**
   * Rebuilds the registry from sockets the runtime kept while the hub was gone (a Durable
   * Object waking from hibernation). Nothing is sent; of duplicates (a replacement that raced
   * the eviction) the newest stays and the others are closed as replaced.
   */
  restore(sockets: Iterable<readonly [HubSocket, SocketAttachment]>): void {
    this.#registry.restore(sockets);
  }

  /** A message arrived on a socket: a binary frame or a text ping. */
  message(socket: HubSocket, data: Uint8Array | string): void {
    const connection = this.#registry.connection(socket);
    if (!connection) return;
    connection.lastSeen = this.#clock.wallNow();
    if (typeof data === "string") {
      if (data === PING_TEXT) socket.sendControl(PONG_TEXT);
      else this.#malformed(connection, `unexpected text message (only "${PING_TEXT}" is allowed)`);
      return;
    }
    try {
      if (connection.role === "node") this.#switch.nodeFrame(connection, data);
      else if (frameType(data) === FrameType.PeerDatagrams)
        this.#switch.uplinkFrame(connection, data);
      else this.#control.frame(connection, data);
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
    const connection = this.#registry.connection(socket);
    if (connection?.role !== "node") return;
    connection.lastSeen = this.#clock.wallNow();
    this.#switch.fromNode(connection, datagrams, count);
  }

  /** The runtime saw the socket close or fail. */
  closed(socket: HubSocket): void {
    const connection = this.#registry.connection(socket);
    if (connection) this.#registry.forget(connection);
  }

  /**
   * Tells the uplink about a new or changed peer and waits (up to ackTimeoutMs) for its ACK.
   * Throws NoUplinkError when no uplink is ready.
   */
  addPeer(peer: PeerEntry): Promise<AckResult> {
    return this.#control.addPeer(peer);
  }

  /**
   * Forgets a peer: the uplink (if any) is told, and the node's streams (owner and candidates)
   * are closed with `reason`. Does not wait for the ACK.
   */
  removePeer(peer: PeerEntry, reason: string): void {
    this.#control.removePeer(peer);
    this.#registry.dropAddress(tagKey(peer.virtualAddress), CloseCode.PeerRemoved, reason);
  }

  /** Closes the uplinks, live and waiting (the operator reset the pinned server key). */
  dropUplinks(code: number, reason: string): void {
    this.#registry.dropUplinks(code, reason);
  }

  /** Closes every stream silent for longer than the liveness timeout; run every SWEEP_INTERVAL_MS. */
  sweep(): void {
    this.#registry.sweep();
  }

  /** Per-node traffic since the last call, for the runtime to add to the store's counters. */
  drainTraffic(): NodeTraffic[] {
    return this.#registry.drainTraffic();
  }

  /** Closes every stream (shutdown). */
  closeAll(code: number, reason: string): void {
    this.#registry.closeAll(code, reason);
  }

  #malformed(connection: Connection, reason: string, code: number = CloseCode.Malformed): void {
    this.metrics.malformedFrames++;
    this.#registry.drop(connection, code, reason);
  }
}
