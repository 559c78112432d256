/**
 * One peer from two discovery sources: the relay's record (shared/mesh/record.ts) and a
 * Kubernetes Node's annotations (node-annotations.ts). The same public key in both is one peer.
 *
 * Which source wins, per field:
 *   - public key and mesh address: the same in both, since each source is accepted only when
 *     the address is the one the key derives to in this mesh's prefix.
 *   - routed prefixes: the relay record's when there is one. It is sealed by the member itself
 *     with the cluster key and lapses unless the member refreshes it, so it is what the member
 *     says now; Node annotations outlive a stopped member and anyone allowed to patch Nodes can
 *     write them. The Node's prefixes are used only while no relay record is held.
 *   - direct candidates: both, the relay's first (its endpoints, then the address the relay saw
 *     with the listen port), then the Node's. A candidate is only tried, and only a handshake
 *     answered with the peer's key moves the peer onto it, so a stale extra costs one probe
 *     while a missing one can cost the direct path.
 *   - lifetime: the relay record's expiry ends only the relay's part; the Node's part lasts
 *     until its annotations change or the Node is deleted. The peer goes when neither is left.
 */
import type { AffiliateRecord } from "../../shared/mesh/record.ts";
import type { Prefix } from "../../shared/net/ip.ts";
import { endpointFromAddress, type UdpEndpoint } from "../bind/endpoint.ts";
import type { NodePeer } from "./node-annotations.ts";

export type PeerSource = "relay" | "kubernetes";

/** What the relay told about a member: its record and the address the relay saw it at. */
export interface RelayFacts {
  readonly record: AffiliateRecord;
  /** 16 bytes; all zero when the relay saw none. */
  readonly observed: Uint8Array;
}

/** A Node's description of a member and the Node's name. */
export interface NodeFacts {
  readonly node: string;
  readonly peer: NodePeer;
}

export interface MergedPeer {
  readonly publicKey: Uint8Array;
  readonly meshAddress: Uint8Array;
  readonly routedPrefixes: readonly Prefix[];
  readonly candidates: UdpEndpoint[];
  readonly sources: readonly PeerSource[];
}

/** The peer both sources describe together; undefined when neither does. */
export function mergePeer(
  relay: RelayFacts | undefined,
  node: NodeFacts | undefined,
): MergedPeer | undefined {
  const base = relay?.record ?? node?.peer;
  if (base === undefined) return undefined;
  const candidates = new Map<string, UdpEndpoint>();
  const add = (address: Uint8Array, port: number): void => {
    const endpoint = endpointFromAddress(address, port);
    if (!candidates.has(endpoint.key)) candidates.set(endpoint.key, endpoint);
  };
  const sources: PeerSource[] = [];
  if (relay !== undefined) {
    sources.push("relay");
    for (const endpoint of relay.record.endpoints) add(endpoint.address, endpoint.port);
    if (relay.record.listenPort !== 0 && !relay.observed.every((b) => b === 0)) {
      add(relay.observed, relay.record.listenPort);
    }
  }
  if (node !== undefined) {
    sources.push("kubernetes");
    for (const endpoint of node.peer.endpoints) add(endpoint.address, endpoint.port);
  }
  return {
    publicKey: base.publicKey,
    meshAddress: base.meshAddress,
    routedPrefixes: base.routedPrefixes,
    candidates: [...candidates.values()],
    sources,
  };
}
