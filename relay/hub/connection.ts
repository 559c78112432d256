/**
 * What the hub keeps per socket, by role. A node stream carries one node's datagrams under its
 * virtual address (its tag on the uplink), with a token bucket and traffic counters; the uplink
 * carries every node's datagrams, tagged, and becomes ready once its HELLO is answered.
 */
import { parseIPv6 } from "../../shared/net/ip.ts";
import { TAG_SIZE } from "../../shared/tunnel/frame.ts";
import type { HubLimits } from "./hub.ts";
import { InitiationIndices } from "./ownership.ts";
import { DatagramQueue } from "./queue.ts";
import type { HubSocket, NodeAttachment, SocketAttachment, UplinkAttachment } from "./socket.ts";
import { TokenBucket } from "./token-bucket.ts";

/** Traffic of one node since the last `drainTraffic`, seen from the node (rx = to the node). */
export interface NodeTraffic {
  readonly virtualAddress: string;
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  lastSeen: number;
}

/** What both roles have: a destination of the switch. */
interface Destination {
  readonly socket: HubSocket;
  /** Backlog while the socket is congested. */
  readonly queue: DatagramQueue;
  /** Datagrams for this destination gathered from the message being switched (views). */
  readonly pending: Uint8Array[];
  pendingCount: number;
  /** When anything last arrived from the socket, ms since the epoch. */
  lastSeen: number;
  closed: boolean;
}

export interface NodeConnection extends Destination {
  readonly role: "node";
  /** Replaced when a candidate becomes the owner. */
  attachment: NodeAttachment;
  /** Whether the stream owns its address, or is a candidate still to prove it (ownership.ts). */
  owner: boolean;
  /** Sender indices of the last handshake initiations the stream sent (ownership.ts). */
  readonly initiations: InitiationIndices;
  /** The node's 16-byte virtual address. */
  readonly tag: Uint8Array;
  /** `tag` as a map key (tagKey). */
  readonly tagKey: string;
  readonly traffic: NodeTraffic;
  readonly bucket: TokenBucket;
}

export interface UplinkConnection extends Destination {
  readonly role: "uplink";
  /** Replaced when HELLO names the server's key. */
  attachment: UplinkAttachment;
  /** The node tag of each datagram in `pending`. */
  readonly pendingTags: Uint8Array[];
  /** HELLO handled and PEER_LIST sent. */
  ready: boolean;
}

export type Connection = NodeConnection | UplinkConnection;

export function createConnection(
  socket: HubSocket,
  attachment: SocketAttachment,
  limits: HubLimits,
  now: number,
): Connection {
  if (attachment.role === "uplink") {
    return {
      role: "uplink",
      socket,
      attachment,
      queue: new DatagramQueue(limits.uplinkQueue),
      pending: [],
      pendingTags: [],
      pendingCount: 0,
      lastSeen: now,
      closed: false,
      ready: false,
    };
  }
  const tag = parseIPv6(attachment.virtualAddress);
  return {
    role: "node",
    socket,
    attachment,
    owner: attachment.candidate !== true,
    initiations: new InitiationIndices(attachment.initiations),
    tag,
    tagKey: tagKey(tag),
    queue: new DatagramQueue(limits.nodeQueue),
    pending: [],
    pendingCount: 0,
    lastSeen: now,
    closed: false,
    traffic: {
      virtualAddress: attachment.virtualAddress,
      rxBytes: 0,
      txBytes: 0,
      rxPackets: 0,
      txPackets: 0,
      lastSeen: now,
    },
    bucket: new TokenBucket(limits.nodeBurst, limits.nodeDatagramsPerSecond, now),
  };
}

/** Map key for a 16-byte tag: one UTF-16 unit per byte pair. */
export function tagKey(tag: Uint8Array): string {
  if (tag.length !== TAG_SIZE)
    throw new RangeError(`expected ${TAG_SIZE} bytes for tag, got ${tag.length}`);
  let key = "";
  for (let i = 0; i < TAG_SIZE; i += 2) key += String.fromCharCode((tag[i] << 8) | tag[i + 1]);
  return key;
}
