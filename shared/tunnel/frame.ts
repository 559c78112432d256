/**
 * Tunnel framing: how WireGuard ciphertext and the uplink's control messages ride WebSocket
 * messages between sidecars and the relay.
 *
 * Two kinds of stream, one WebSocket each:
 *
 * - Node stream (a node sidecar <-> relay). Binary messages are NODE_DATAGRAMS frames in both
 *   directions and nothing else.
 * - Uplink (the server sidecar <-> relay). The sidecar opens with HELLO (protocol version and
 *   the server's WireGuard public key). The relay answers with the full peer set in one or more
 *   PEER_LIST chunks, then sends PEER_ADDED / PEER_REMOVED as nodes come and go; the sidecar
 *   configures WireGuard and answers each PEER_* message with ACK of its sequence number.
 *   Datagrams travel as PEER_DATAGRAMS frames both ways, each datagram tagged with the virtual
 *   address of the node it comes from or goes to.
 *
 * Every binary message is one frame: a 1-byte type, then the type's payload. Integers are
 * big-endian. A datagram batch holds at least one datagram; datagrams are never empty.
 *
 * Liveness: sidecars send the text message PING_TEXT at least every PING_INTERVAL_MS and the
 * relay answers PONG_TEXT. A fixed text pair lets a hibernating Durable Object answer without
 * waking. Either side treats a stream silent for LIVENESS_TIMEOUT_MS as dead.
 *
 * A frame that breaks these rules closes only the stream that sent it, with CLOSE_MALFORMED or
 * CLOSE_TOO_BIG and a reason that names the problem.
 */

/** Version carried in HELLO; the relay refuses other versions with CLOSE_UNSUPPORTED_VERSION. */
export const PROTOCOL_VERSION = 1;

export const FrameType = {
  /** Node stream, both ways: { u16 length, length bytes of datagram }+ */
  NodeDatagrams: 0x01,
  /** Uplink, both ways: { 16B node virtual address, u16 length, length bytes of datagram }+ */
  PeerDatagrams: 0x02,
  /** Uplink, sidecar -> relay, first message: u8 version, 32B server WireGuard public key */
  Hello: 0x10,
  /** Uplink, relay -> sidecar: u32 seq, then one PEER_ENTRY_SIZE entry */
  PeerAdded: 0x11,
  /** Uplink, relay -> sidecar: u32 seq, then one PEER_ENTRY_SIZE entry */
  PeerRemoved: 0x12,
  /**
   * Uplink, relay -> sidecar: u32 seq, u8 flags (bit 0: last chunk), u16 count, then count
   * PEER_ENTRY_SIZE entries. The chunks of one list share seq; on the last chunk the sidecar
   * removes every peer the list did not name, then acknowledges seq.
   */
  PeerList: 0x13,
  /** Uplink, sidecar -> relay: u32 seq of the PEER_* message now applied */
  Ack: 0x14,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Peer entry: 32B node WireGuard public key, 16B node address, 16B node virtual address. */
export const PEER_ENTRY_SIZE = 64;
export const PEER_LIST_LAST = 0x01;
/** Entries per PEER_LIST chunk: keeps each chunk far below MAX_FRAME_SIZE. */
export const PEER_LIST_CHUNK = 1024;

export const TYPE_SIZE = 1;
export const LENGTH_SIZE = 2;
export const TAG_SIZE = 16;
export const KEY_SIZE = 32;
export const SEQ_SIZE = 4;
export const HELLO_SIZE = TYPE_SIZE + 1 + KEY_SIZE;
export const PEER_EVENT_SIZE = TYPE_SIZE + SEQ_SIZE + PEER_ENTRY_SIZE;
export const PEER_LIST_HEADER_SIZE = TYPE_SIZE + SEQ_SIZE + 1 + 2;
export const ACK_SIZE = TYPE_SIZE + SEQ_SIZE;

/** Largest datagram a frame can carry (the u16 length). */
export const MAX_DATAGRAM_SIZE = 0xffff;
/** Largest frame either side accepts; checked before anything is decoded or allocated. */
export const MAX_FRAME_SIZE = 1 << 20;

export const PING_TEXT = "ping";
export const PONG_TEXT = "pong";
export const PING_INTERVAL_MS = 15_000;
/**
 * Three missed pings. With the relay checking every SWEEP_INTERVAL_MS, a dead stream is gone
 * within 60 s.
 */
export const LIVENESS_TIMEOUT_MS = 45_000;
/**
 * How often the relay looks for streams silent past LIVENESS_TIMEOUT_MS, on Node and on Workers
 * alike. One ping interval: a dead stream outlives the timeout by at most one missed ping, and a
 * hibernating Durable Object, whose alarm runs the sweep, wakes no more often than its streams
 * ping. A relay configured with a shorter liveness timeout sweeps four times per timeout.
 */
export const SWEEP_INTERVAL_MS = PING_INTERVAL_MS;

/** WebSocket close codes (4000-4999 are the application's) used on both stream kinds. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  /** Never sent (RFC 6455): what a runtime reports for a close frame without a code. */
  NoStatus: 1005,
  /** Never sent (RFC 6455): what a runtime reports when a connection dropped without a close. */
  Abnormal: 1006,
  Malformed: 1007,
  TooBig: 1009,
  /**
   * "Try Again Later" (RFC 6455 registry): refused because the relay holds its limit of streams;
   * clients treat it as worth retrying.
   */
  TryAgainLater: 1013,
  /** Uplink secret wrong, or the network does not exist. */
  Unauthorized: 4401,
  /** The x-siderolink-ipv6-addr value is not a provisioned peer of this network. */
  PeerNotAllowed: 4403,
  /** Nothing received (not even a ping) for LIVENESS_TIMEOUT_MS. */
  LivenessTimeout: 4408,
  /** A newer stream took over this node's virtual address, or this network's uplink. */
  Replaced: 4409,
  /** The peer was revoked or re-provisioned under another virtual address. */
  PeerRemoved: 4410,
  /**
   * The uplink's HELLO named a server key other than the one the network pinned at its first
   * HELLO, or the operator reset the pin under a live uplink. Only an operator action
   * (`siderolink-relay network reset-server-key`) lets another key in.
   */
  ServerKeyMismatch: 4412,
  /** HELLO carried a protocol version this relay does not speak. */
  UnsupportedVersion: 4426,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

export const REASON_PEER_NOT_ALLOWED = "peer not allowed";
export const REASON_PEER_REPLACED = "peer replaced";
