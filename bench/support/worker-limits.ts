/**
 * Worker vars that lift the relay's per-node datagram limit (a token bucket: `node-burst`
 * datagrams at once, `node-datagrams-per-second` regained), as the benchmarks' Node relay lifts it
 * in node-relay.ts: a load generator plays one node at rates no real node sends, and the
 * benchmarks measure the relay's switching, not its limiter.
 */
export const LIFTED_NODE_LIMIT_VARS: Record<string, string> = {
  RELAY_NODE_BURST: "1000000000",
  RELAY_NODE_DATAGRAMS_PER_SECOND: "1000000000",
};
