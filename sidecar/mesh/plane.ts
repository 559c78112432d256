/**
 * Where a mesh member's WireGuard runs: the data plane under member.ts, which owns discovery,
 * routing and the decisions on paths. Both planes give each peer a relay endpoint (datagrams
 * carried by the relay link) and copy the handshake initiations sent there to the peer's direct
 * candidates, so a working direct path is found by the handshake itself.
 *
 * - userspace (userspace-plane.ts): the TypeScript device on a TUN with the dual bind.
 * - kernel (kernel-plane.ts): a kernel or wireguard-go interface configured with `wg`, relayed
 *   peers reached through loopback bridge sockets owned by the sidecar.
 */
import type { BackendKind, PeerStatus } from "../backend/backend.ts";
import type { UdpEndpoint } from "../bind/endpoint.ts";

export interface MeshPlanePeer {
  /** The member id (SHA-256 of the public key). */
  readonly member: Uint8Array;
  readonly publicKey: Uint8Array;
  /** CIDRs: the mesh address and routed prefixes, replacing the previous ones. */
  readonly allowedIps: readonly string[];
  /** Where the peer may be reached over UDP, tried with each handshake while relayed. */
  readonly candidates: readonly UdpEndpoint[];
}

export interface PeerPath extends PeerStatus {
  readonly path: "direct" | "relay";
}

export interface MeshPlane {
  readonly kind: BackendKind;
  readonly iface: string;
  /** WireGuard's UDP port, published in the member's record. */
  readonly listenPort: number;
  /** Every UDP port the plane sends from: routing keeps their packets out of the tunnel. */
  readonly udpPorts: readonly number[];
  /**
   * Adds a peer (on its relay endpoint, with a handshake sent at once) or updates its allowed
   * IPs and candidates, leaving its path as it is.
   */
  setPeer(peer: MeshPlanePeer): Promise<void>;
  removePeer(peer: MeshPlanePeer): Promise<void>;
  /** A datagram the relay link brought from `member` (a view valid only during the call). */
  deliverRelayed(member: Uint8Array, datagram: Uint8Array): void;
  /** Each peer's path, by base64 public key. */
  paths(): Promise<Map<string, PeerPath>>;
  /** A new handshake to a relayed peer: its candidates are tried again. */
  sweep(peer: MeshPlanePeer): Promise<void>;
  /** The direct path stopped: the peer goes back to its relay endpoint and is swept. */
  fallBack(peer: MeshPlanePeer): Promise<void>;
  drops(): Record<string, number>;
  close(): Promise<void>;
}
