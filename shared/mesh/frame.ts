/**
 * Mesh framing: how a member's discovery records and relayed WireGuard datagrams ride its one
 * WebSocket to the relay (`GET /v1/mesh/<cluster id>/connect?member=<member id>`, ids as in
 * cluster.ts).
 *
 * Flow: on connect the relay sends every live record of the cluster except the member's own
 * (one RECORD frame each) and then SYNCED; after that a RECORD for each record published or
 * refreshed and a REMOVED for each that expired. The member sends PUBLISH with its sealed
 * record on connect and again before it expires (the relay keeps it RECORD_TTL_MS from the
 * last PUBLISH). DATAGRAMS carry WireGuard ciphertext both ways; each datagram is tagged with a
 * member id: the destination when a member sends, the source when the relay delivers. The relay
 * switches only between members connected to the same cluster and drops (and counts) the rest.
 *
 * Every binary message is one frame: a 1-byte type, then the type's payload. Integers are
 * big-endian. Liveness is the tunnel's: the text PING_TEXT / PONG_TEXT pair of
 * shared/tunnel/frame.ts, at its intervals.
 *
 * A frame that breaks these rules closes the socket that sent it with CloseCode.Malformed or
 * CloseCode.TooBig (shared/tunnel/frame.ts) and a reason naming the problem.
 */

export const MeshFrameType = {
  /** member -> relay: the member's sealed record (MIN_SEALED_RECORD_SIZE-MAX_SEALED_RECORD_SIZE) */
  Publish: 0x20,
  /**
   * relay -> member: 32B member id, 16B address the relay observed the member connect from
   * (IPv4 as ::ffff:a.b.c.d; all zero when the runtime cannot tell), then the sealed record
   */
  Record: 0x21,
  /** relay -> member: 32B member id of a record that expired */
  Removed: 0x22,
  /** both ways: { 32B member id, u16 length, length bytes of datagram }+ */
  Datagrams: 0x23,
  /** relay -> member, empty: every record that existed at connect has been sent */
  Synced: 0x24,
} as const;
export type MeshFrameType = (typeof MeshFrameType)[keyof typeof MeshFrameType];

export const MESH_TYPE_SIZE = 1;
export const MEMBER_ID_SIZE = 32;
export const OBSERVED_SIZE = 16;
export const MESH_LENGTH_SIZE = 2;
export const RECORD_HEADER_SIZE = MESH_TYPE_SIZE + MEMBER_ID_SIZE + OBSERVED_SIZE;
export const REMOVED_SIZE = MESH_TYPE_SIZE + MEMBER_ID_SIZE;
/** Per datagram in a DATAGRAMS frame: the member id and the length. */
export const DATAGRAM_HEADER_SIZE = MEMBER_ID_SIZE + MESH_LENGTH_SIZE;
/** Largest datagram a frame carries (the u16 length). */
export const MAX_MESH_DATAGRAM_SIZE = 0xffff;
/** Largest frame either side accepts; checked before anything is decoded. */
export const MAX_MESH_FRAME_SIZE = 256 * 1024;
/** A DATAGRAMS frame is flushed before it would grow past this. */
export const MESH_BATCH_BYTES = 64 * 1024;

/** How long the relay keeps a record after its last PUBLISH. */
export const RECORD_TTL_MS = 5 * 60_000;
/** Members publish again this often: three chances before the record expires. */
export const REPUBLISH_INTERVAL_MS = RECORD_TTL_MS / 3;

/** Route of a member's WebSocket; `:cluster` is the cluster id. */
export const MESH_CONNECT_ROUTE = "/v1/mesh/:cluster/connect";
/** GET: the cluster's stored records (sealed) as JSON, for operators and tests. */
export const MESH_RECORDS_ROUTE = "/v1/mesh/:cluster/records";
/** PUT: publish a sealed record (body) over HTTP for member `:member`. */
export const MESH_RECORD_ROUTE = "/v1/mesh/:cluster/records/:member";
export const MESH_PATH_PREFIX = "/v1/mesh/";
export const MEMBER_QUERY = "member";

/** The cluster id a mesh request path names, if it is a mesh path. */
export function clusterInPath(pathname: string): string | undefined {
  if (!pathname.startsWith(MESH_PATH_PREFIX)) return undefined;
  const rest = pathname.slice(MESH_PATH_PREFIX.length);
  const slash = rest.indexOf("/");
  return slash < 0 ? rest : rest.slice(0, slash);
}
