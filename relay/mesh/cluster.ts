/**
 * One mesh cluster on the relay (framing in shared/mesh/frame.ts): its sealed records with
 * their expiry, its members' sockets, and the switch that carries datagrams between two of its
 * members. Portable: each runtime passes sockets, a record store and the time.
 *
 * The relay cannot open a record (it never has the cluster token), so it checks only sizes and
 * limits. Whoever knows the cluster id may publish; a record that was not sealed with the
 * token's key is dropped by every member that receives it.
 */
import { hexToBytes as hexBytes } from "@noble/hashes/utils.js";
import { formatId } from "../../shared/mesh/cluster.ts";
import {
  DatagramBatcher,
  decodeMeshFrame,
  encodeRecordFrame,
  encodeRemoved,
  forEachDatagram,
  MeshFrameError,
  SYNCED_FRAME,
} from "../../shared/mesh/codec.ts";
import {
  MEMBER_ID_SIZE,
  MeshFrameType,
  OBSERVED_SIZE,
  RECORD_TTL_MS,
} from "../../shared/mesh/frame.ts";
import { formatIP, parseIP } from "../../shared/net/ip.ts";
import { CloseCode, PING_TEXT, PONG_TEXT } from "../../shared/tunnel/frame.ts";
import type { RateLimiter } from "../app/rate-limit.ts";
import { TokenBucket } from "../hub/token-bucket.ts";

/** What the cluster needs of a WebSocket. */
export interface MeshSocket {
  /** Sends one binary frame (a view the cluster reuses once this returns: copy to keep) or text. */
  send(frame: Uint8Array | string): void;
  close(code: number, reason: string): void;
  /** Bytes accepted and not yet written; 0 where the runtime cannot tell. */
  readonly bufferedAmount: number;
}

export interface StoredRecord {
  /** The member id, 64 hex digits. */
  readonly member: string;
  /** 16 bytes: the address the member published from (IPv4-mapped), all zero if unknown. */
  readonly observed: Uint8Array;
  readonly record: Uint8Array;
  /** Wall-clock ms. */
  readonly expiresAt: number;
}

/** Where records live: memory on Node, the Durable Object's SQLite on Workers. */
export interface MeshRecordStore {
  all(): StoredRecord[];
  put(record: StoredRecord): void;
  delete(member: string): void;
}

export interface MeshLimits {
  /** Records one cluster holds; a new member beyond it is refused (its socket: 1013). */
  readonly maxRecordsPerCluster: number;
  readonly recordTtlMs: number;
  /** Datagrams one member may relay at once, and regains per second. */
  readonly datagramBurst: number;
  readonly datagramsPerSecond: number;
  /** A receiver with this much unsent is congested: datagrams to it are dropped and counted. */
  readonly maxBufferedBytes: number;
}

export const DEFAULT_MESH_LIMITS: MeshLimits = {
  maxRecordsPerCluster: 1024,
  recordTtlMs: RECORD_TTL_MS,
  datagramBurst: 16_384,
  datagramsPerSecond: 65_536,
  maxBufferedBytes: 1024 * 1024,
};

export interface MeshCounters {
  relayedDatagrams: number;
  relayedBytes: number;
  /** Destination not connected to this cluster (or the sender itself). */
  dropNoMember: number;
  dropRateLimited: number;
  dropCongested: number;
  publishes: number;
  publishRateLimited: number;
}

interface Member {
  readonly socket: MeshSocket;
  /** The member id in the 16-character form used as the socket map key. */
  readonly key: string;
  readonly id: Uint8Array;
  readonly observed: Uint8Array;
  /** The client address text for the per-address publish limit. */
  readonly address: string;
  readonly bucket: TokenBucket;
  /** When the member's last message arrived (wall ms), for closeSilent. */
  lastSeen: number;
}

export interface MeshClusterOptions {
  readonly store: MeshRecordStore;
  readonly limits?: Partial<MeshLimits>;
  /** Wall-clock ms. */
  readonly now: () => number;
  /** PUBLISH frames per client address (the HTTP routes' limiter: one budget per address). */
  readonly publishLimiter: RateLimiter;
}

export class MeshCluster {
  readonly counters: MeshCounters = {
    relayedDatagrams: 0,
    relayedBytes: 0,
    dropNoMember: 0,
    dropRateLimited: 0,
    dropCongested: 0,
    publishes: 0,
    publishRateLimited: 0,
  };
  readonly limits: MeshLimits;
  readonly #store: MeshRecordStore;
  readonly #now: () => number;
  readonly #publishLimiter: RateLimiter;
  readonly #members = new Map<string, Member>();
  readonly #bySocket = new Map<MeshSocket, Member>();
  readonly #batcher: DatagramBatcher;
  #target: Member | undefined;

  constructor(options: MeshClusterOptions) {
    this.limits = { ...DEFAULT_MESH_LIMITS, ...options.limits };
    this.#store = options.store;
    this.#now = options.now;
    this.#publishLimiter = options.publishLimiter;
    this.#batcher = new DatagramBatcher((frame) => this.#target?.socket.send(frame));
  }

  get connected(): number {
    return this.#members.size;
  }

  /** Whether `memberId` has a socket here (a reconnect replaces it, so it is never refused). */
  isConnected(memberId: Uint8Array): boolean {
    return this.#members.has(memberKey(memberId));
  }

  /**
   * Adds a member's socket (replacing an older one of the same member). Unless `restored`
   * (a socket that outlived a Durable Object's eviction), it gets every other live record, then
   * SYNCED.
   */
  connect(
    socket: MeshSocket,
    memberId: Uint8Array,
    observed: Uint8Array,
    address: string,
    restored = false,
  ): void {
    const key = memberKey(memberId);
    const previous = this.#members.get(key);
    if (previous && previous.socket !== socket) {
      this.#bySocket.delete(previous.socket);
      previous.socket.close(CloseCode.Replaced, "a newer connection of this member took over");
    }
    const member: Member = {
      socket,
      key,
      id: memberId.slice(),
      observed: observed.slice(),
      address,
      bucket: new TokenBucket(
        this.limits.datagramBurst,
        this.limits.datagramsPerSecond,
        this.#now(),
      ),
      lastSeen: this.#now(),
    };
    this.#members.set(key, member);
    this.#bySocket.set(socket, member);
    if (restored) return;
    const own = formatId(memberId);
    for (const record of this.#live()) {
      if (record.member === own) continue;
      socket.send(encodeRecordFrame(hexBytes(record.member), record.observed, record.record));
    }
    socket.send(SYNCED_FRAME);
  }

  closed(socket: MeshSocket): void {
    const member = this.#bySocket.get(socket);
    if (!member) return;
    this.#bySocket.delete(socket);
    if (this.#members.get(member.key) === member) this.#members.delete(member.key);
  }

  /** A message from a connected socket. Protocol errors close that socket only. */
  message(socket: MeshSocket, data: Uint8Array | string): void {
    const member = this.#bySocket.get(socket);
    if (!member) return;
    member.lastSeen = this.#now();
    if (typeof data === "string") {
      if (data === PING_TEXT) socket.send(PONG_TEXT);
      return;
    }
    try {
      const frame = decodeMeshFrame(data);
      switch (frame.type) {
        case MeshFrameType.Publish: {
          if (this.#publishLimiter.take(member.address, this.#now()) > 0) {
            this.counters.publishRateLimited++;
            return;
          }
          if (this.publish(member.id, member.observed, frame.record) === "full") {
            socket.close(CloseCode.TryAgainLater, this.#fullReason());
          }
          return;
        }
        case MeshFrameType.Datagrams:
          this.#relay(member, frame.frame);
          return;
        default:
          throw new MeshFrameError(`frame type 0x${data[0].toString(16)} is the relay's to send`);
      }
    } catch (error) {
      if (!(error instanceof MeshFrameError)) throw error;
      socket.close(error.tooBig ? CloseCode.TooBig : CloseCode.Malformed, error.message);
    }
  }

  /**
   * Stores a member's sealed record for RECORD_TTL_MS and sends it to every other member.
   * Returns "full", storing nothing, when the cluster holds its limit of records and this
   * member has none. Rate limits are the caller's (the route, or the socket's PUBLISH).
   */
  publish(memberId: Uint8Array, observed: Uint8Array, record: Uint8Array): "full" | undefined {
    const now = this.#now();
    const member = formatId(memberId);
    const live = this.#live();
    if (live.length >= this.limits.maxRecordsPerCluster && !live.some((r) => r.member === member)) {
      return "full";
    }
    const stored: StoredRecord = {
      member,
      observed: observed.slice(),
      record: record.slice(),
      expiresAt: now + this.limits.recordTtlMs,
    };
    this.#store.put(stored);
    this.counters.publishes++;
    const frame = encodeRecordFrame(memberId, stored.observed, stored.record);
    const key = memberKey(memberId);
    for (const other of this.#members.values()) if (other.key !== key) other.socket.send(frame);
    return undefined;
  }

  /** Live records, for the records route. */
  records(): StoredRecord[] {
    return this.#live();
  }

  /**
   * Deletes records past their expiry and tells every member. Returns the earliest expiry left
   * (wall ms), or undefined when no record is left.
   */
  sweep(): number | undefined {
    const now = this.#now();
    let next: number | undefined;
    for (const record of this.#store.all()) {
      if (record.expiresAt > now) {
        next = next === undefined ? record.expiresAt : Math.min(next, record.expiresAt);
        continue;
      }
      this.#store.delete(record.member);
      const frame = encodeRemoved(hexBytes(record.member));
      for (const member of this.#members.values()) member.socket.send(frame);
    }
    return next;
  }

  /**
   * Closes sockets silent for `timeoutMs` (members ping every PING_INTERVAL_MS). Only where the
   * relay sees every ping: a Durable Object answers them without waking.
   */
  closeSilent(timeoutMs: number): void {
    const now = this.#now();
    for (const member of [...this.#members.values()]) {
      if (now - member.lastSeen < timeoutMs) continue;
      member.socket.close(CloseCode.LivenessTimeout, `nothing received for ${timeoutMs} ms`);
      this.closed(member.socket);
    }
  }

  /** Closes every socket (relay shutting down). */
  closeAll(code: number, reason: string): void {
    for (const member of this.#members.values()) member.socket.close(code, reason);
    this.#members.clear();
    this.#bySocket.clear();
  }

  #fullReason(): string {
    return `mesh cluster holds its limit of ${this.limits.maxRecordsPerCluster} records; try again later`;
  }

  #live(): StoredRecord[] {
    const now = this.#now();
    return this.#store.all().filter((record) => record.expiresAt > now);
  }

  /** Switches a DATAGRAMS frame: each datagram to its destination, tagged with the sender. */
  #relay(from: Member, frame: Uint8Array): void {
    const { counters } = this;
    from.bucket.refill(this.#now());
    forEachDatagram(frame, (destination, datagram) => {
      if (!from.bucket.take()) {
        counters.dropRateLimited++;
        return;
      }
      const to = this.#members.get(memberKey(destination));
      if (to === undefined || to === from) {
        counters.dropNoMember++;
        return;
      }
      if (to.socket.bufferedAmount > this.limits.maxBufferedBytes) {
        counters.dropCongested++;
        return;
      }
      if (this.#target !== to) {
        this.#batcher.flush();
        this.#target = to;
      }
      this.#batcher.add(from.id, datagram);
      counters.relayedDatagrams++;
      counters.relayedBytes += datagram.length;
    });
    this.#batcher.flush();
    this.#target = undefined;
  }
}

/** A member id as a 16-character string: 2 bytes per UTF-16 unit, cheaper than hex per datagram. */
function memberKey(id: Uint8Array): string {
  let key = "";
  for (let i = 0; i < MEMBER_ID_SIZE; i += 2) key += String.fromCharCode((id[i] << 8) | id[i + 1]);
  return key;
}

/** The 16-byte observed form of a client address text; all zero when unknown or unreadable. */
export function observedAddress(text: string | undefined): Uint8Array {
  const out = new Uint8Array(OBSERVED_SIZE);
  const bytes =
    text === undefined
      ? undefined
      : parseIP(text.startsWith("::ffff:") && text.includes(".") ? text.slice(7) : text);
  if (bytes === undefined) return out;
  if (bytes.length === 16) return bytes;
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(bytes, 12);
  return out;
}

/** The text of an observed address, or null when the relay could not tell. */
export function formatObserved(observed: Uint8Array): string | null {
  if (observed.every((b) => b === 0)) return null;
  return formatIP(observed);
}
