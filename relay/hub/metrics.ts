/** Counters one network's hub keeps; the app renders them as Prometheus text. */

/** Why a datagram was not forwarded. */
export const DROP_REASONS = [
  /** Not a WireGuard message by type and length. */
  "not_wireguard",
  /** A node sent while the network had no ready server uplink. */
  "no_uplink",
  /** The uplink tagged a datagram for a node with no open stream. */
  "unknown_peer",
  /** The destination was congested and its bounded queue dropped the oldest. */
  "queue_full",
  /** A node sent faster than its stream's token bucket allows. */
  "rate_limited",
  /** The destination stream was closing or gone: sent to it, or left in its queue, for nowhere. */
  "stream_closed",
  /**
   * A candidate stream (one that has not yet proven it holds the node's key) sent something other
   * than a handshake initiation, or the uplink sent the address's transport data while only
   * candidates were open. See ownership.ts.
   */
  "unproven",
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export interface HubMetrics {
  /** Datagrams and bytes from nodes to the uplink, and from the uplink to nodes. */
  nodeToUplinkDatagrams: number;
  nodeToUplinkBytes: number;
  uplinkToNodeDatagrams: number;
  uplinkToNodeBytes: number;
  drops: Record<DropReason, number>;
  /** Streams closed for a malformed or oversized frame. */
  malformedFrames: number;
  /** Streams closed for silence. */
  livenessTimeouts: number;
  /** Peer events the uplink acknowledged in time, and those it did not. */
  acks: number;
  ackTimeouts: number;
}

export function createHubMetrics(): HubMetrics {
  return {
    nodeToUplinkDatagrams: 0,
    nodeToUplinkBytes: 0,
    uplinkToNodeDatagrams: 0,
    uplinkToNodeBytes: 0,
    drops: {
      not_wireguard: 0,
      no_uplink: 0,
      unknown_peer: 0,
      queue_full: 0,
      rate_limited: 0,
      stream_closed: 0,
      unproven: 0,
    },
    malformedFrames: 0,
    livenessTimeouts: 0,
    acks: 0,
    ackTimeouts: 0,
  };
}
