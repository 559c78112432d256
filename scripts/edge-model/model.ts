/**
 * Load model of one network's relay on Cloudflare: what its Durable Object, or each of S shard
 * objects (docs/edge-scale.md), carries for N nodes, which limit binds first, and the node
 * count where it breaks. Pure arithmetic over its inputs: calibration.ts derives the costs from
 * measured figures, scripts/edge-model.ts fills in the product's constants and prints tables.
 *
 * What one node costs its object each second:
 *
 * - Idle (keepalives only). Both WireGuard ends keep a persistent keepalive (25 s), but any
 *   authenticated packet either way restarts both timers, so one keepalive crosses per interval.
 *   The initiator rekeys every rekey interval while it sends: an initiation and a response, one
 *   datagram message each. The sidecar's liveness ping arrives every ping interval and the
 *   runtime answers it without running the object's code (setWebSocketAutoResponse): it counts
 *   as an incoming message, costs no object CPU.
 * - Active: r = rate / datagram size datagrams a second each way. A sender (node sidecar, or the
 *   server sidecar's uplink for one node) sends one message per wakeup with what it has read;
 *   measured at full speed it wakes about F times a second (S3), so batches grow only above F:
 *   b(r) = min(maxBatch, max(1, r / F)), r / b(r) messages. Evenly spaced datagrams batch
 *   least, so this overstates messages for bursty traffic. Rekeys and pings as when idle.
 *
 * The object forwards each datagram message it receives as one message (node to uplink, uplink
 * to node), so messages out = messages in. Object CPU = messages x per-message cost + datagrams
 * x (per-datagram + bytes x per-byte cost). Every object also holds one uplink, which pings.
 *
 * Limits of one object: incoming messages per second (Cloudflare's soft limit of 1,000 requests
 * a second per object; Infinity models CPU alone), one CPU core (an object is single-threaded),
 * isolate memory (128 MB) over a heap cost per connection, and the relay's own tunnel limit.
 *
 * Shards: the primary hashes each node's virtual address to one of S objects. The largest of S
 * shards holding N nodes between them is about N/S + sqrt(2 (N/S) ln S) (balls into bins), and
 * never more than N.
 */

export type Limit = "messages" | "cpu" | "memory" | "tunnels";
export const LIMITS: readonly Limit[] = ["messages", "cpu", "memory", "tunnels"];

/** Costs of the object and batching of the senders, from measured figures (calibration.ts). */
export interface Calibration {
  /** Object CPU (µs) to take one datagram message and send it on, apart from its datagrams. */
  readonly cpuPerMessageUs: number;
  /** Object CPU (µs) per datagram in a message, apart from its bytes. */
  readonly cpuPerDatagramUs: number;
  /** Object CPU (µs) per datagram byte. */
  readonly cpuPerByteUs: number;
  /** Messages a second a sender at full speed sends: above this rate its batches grow. */
  readonly senderMessagesPerSecond: number;
  /** Datagrams a sender puts in one message at most (the sidecar's TUN read batch). */
  readonly maxBatch: number;
}

export interface Timers {
  readonly keepaliveSeconds: number;
  readonly rekeySeconds: number;
  readonly pingSeconds: number;
}

/** Sizes of the WireGuard messages an idle node exchanges. */
export interface IdleDatagrams {
  readonly keepaliveBytes: number;
  readonly initiationBytes: number;
  readonly responseBytes: number;
}

export interface Traffic {
  /** Share of nodes that are active (0 to 1); the others only keep their link alive. */
  readonly activeShare: number;
  /** Node to server, Mbit/s of WireGuard datagrams per active node. */
  readonly upMbps: number;
  /** Server to node, Mbit/s per active node. */
  readonly downMbps: number;
  /** Bytes per datagram of active traffic. */
  readonly datagramBytes: number;
}

export interface ObjectLimits {
  /** Incoming WebSocket messages a second one object may take; Infinity for no such limit. */
  readonly messagesPerSecond: number;
  /** Memory of the object's isolate. */
  readonly memoryBytes: number;
  /** Heap one open stream costs the object. */
  readonly heapBytesPerConnection: number;
  /** Node streams the relay accepts per object (its maxTunnels). */
  readonly tunnels: number;
}

export interface Network {
  readonly traffic: Traffic;
  readonly timers: Timers;
  readonly idle: IdleDatagrams;
  readonly limits: ObjectLimits;
  readonly calibration: Calibration;
}

/** Per second, what one node (or the uplink) asks of its object. */
export interface Demand {
  /** Messages received, pings included. */
  readonly messagesIn: number;
  /** Of those, pings the runtime answers (no object CPU). */
  readonly pings: number;
  readonly datagrams: number;
  readonly bytes: number;
  /** Object CPU, seconds per second. */
  readonly cpu: number;
  readonly connections: number;
}

export interface ObjectLoad extends Demand {
  readonly nodes: number;
  readonly messagesOut: number;
  readonly mbps: number;
  /** Share of each limit in use; above 1 the object is past it. */
  readonly utilisation: Readonly<Record<Limit, number>>;
  /** The limit with the largest share. */
  readonly binding: Limit;
}

export interface Capacity {
  /** Nodes one object carries before its binding limit. */
  readonly nodesPerObject: number;
  readonly binding: Limit;
  /** Nodes per object at each limit alone. */
  readonly byLimit: Readonly<Record<Limit, number>>;
}

/** Datagrams per message a sender sends at `datagramsPerSecond`. */
export function batchFactor(datagramsPerSecond: number, calibration: Calibration): number {
  return Math.min(
    calibration.maxBatch,
    Math.max(1, datagramsPerSecond / calibration.senderMessagesPerSecond),
  );
}

/** One node's demand: the mix of idle and active nodes that `traffic.activeShare` sets. */
export function nodeDemand(network: Network): Demand {
  const { traffic } = network;
  const idle = idleDemand(network);
  const active = activeDemand(network);
  const mix = (a: number, i: number) => traffic.activeShare * a + (1 - traffic.activeShare) * i;
  return {
    messagesIn: mix(active.messagesIn, idle.messagesIn),
    pings: mix(active.pings, idle.pings),
    datagrams: mix(active.datagrams, idle.datagrams),
    bytes: mix(active.bytes, idle.bytes),
    cpu: mix(active.cpu, idle.cpu),
    connections: 1,
  };
}

/** A node that only keeps its link alive. */
export function idleDemand(network: Network): Demand {
  const { timers, idle } = network;
  const keepalives = 1 / timers.keepaliveSeconds;
  const handshakes = 1 / timers.rekeySeconds;
  const pings = 1 / timers.pingSeconds;
  const datagrams = keepalives + 2 * handshakes;
  const bytes =
    keepalives * idle.keepaliveBytes + handshakes * (idle.initiationBytes + idle.responseBytes);
  return withCpu(network, {
    messagesIn: datagrams + pings,
    pings,
    datagrams,
    bytes,
    connections: 1,
  });
}

/** A node that sends and receives at the traffic's rates. */
export function activeDemand(network: Network): Demand {
  const { traffic, timers, idle, calibration } = network;
  let messages = 0;
  let datagrams = 0;
  for (const mbps of [traffic.upMbps, traffic.downMbps]) {
    const rate = (mbps * 1e6) / 8 / traffic.datagramBytes;
    datagrams += rate;
    messages += rate / batchFactor(rate, calibration);
  }
  const handshakes = 1 / timers.rekeySeconds;
  const pings = 1 / timers.pingSeconds;
  return withCpu(network, {
    messagesIn: messages + 2 * handshakes + pings,
    pings,
    datagrams: datagrams + 2 * handshakes,
    bytes:
      datagrams * traffic.datagramBytes + handshakes * (idle.initiationBytes + idle.responseBytes),
    connections: 1,
  });
}

/** The uplink every object holds: one stream that pings. */
export function uplinkDemand(network: Network): Demand {
  const pings = 1 / network.timers.pingSeconds;
  return { messagesIn: pings, pings, datagrams: 0, bytes: 0, cpu: 0, connections: 1 };
}

/** The load of one object holding `nodes` nodes and the uplink. */
export function objectLoad(network: Network, nodes: number): ObjectLoad {
  const node = nodeDemand(network);
  const uplink = uplinkDemand(network);
  const sum = (pick: (demand: Demand) => number) => nodes * pick(node) + pick(uplink);
  const messagesIn = sum((d) => d.messagesIn);
  const pings = sum((d) => d.pings);
  const bytes = sum((d) => d.bytes);
  const cpu = sum((d) => d.cpu);
  const connections = sum((d) => d.connections);
  const { limits } = network;
  const utilisation: Record<Limit, number> = {
    messages: messagesIn / limits.messagesPerSecond,
    cpu,
    memory: (connections * limits.heapBytesPerConnection) / limits.memoryBytes,
    tunnels: nodes / limits.tunnels,
  };
  return {
    nodes,
    messagesIn,
    pings,
    datagrams: sum((d) => d.datagrams),
    bytes,
    cpu,
    connections,
    // Each datagram message goes on as one message; each ping gets its pong.
    messagesOut: messagesIn,
    mbps: (bytes * 8) / 1e6,
    utilisation,
    binding: LIMITS.reduce((a, b) => (utilisation[b] > utilisation[a] ? b : a)),
  };
}

/** Nodes one object carries: the most with every limit's share at or below 1. */
export function objectCapacity(network: Network): Capacity {
  const node = nodeDemand(network);
  const uplink = uplinkDemand(network);
  const { limits } = network;
  const room = (limit: number, perNode: number, fixed: number) =>
    perNode > 0 ? Math.max(0, (limit - fixed) / perNode) : Infinity;
  const byLimit: Record<Limit, number> = {
    messages: room(limits.messagesPerSecond, node.messagesIn, uplink.messagesIn),
    cpu: room(1, node.cpu, uplink.cpu),
    memory: room(
      limits.memoryBytes / limits.heapBytesPerConnection,
      node.connections,
      uplink.connections,
    ),
    tunnels: limits.tunnels,
  };
  const binding = LIMITS.reduce((a, b) => (byLimit[b] < byLimit[a] ? b : a));
  return { nodesPerObject: Math.floor(byLimit[binding]), binding, byLimit };
}

/** Nodes in the largest of `shards` shards when a hash spreads `nodes` over them. */
export function largestShard(nodes: number, shards: number): number {
  const mean = nodes / shards;
  return Math.min(nodes, mean + Math.sqrt(2 * mean * Math.log(shards)));
}

/** The most nodes a network of `shards` objects carries: its largest shard at capacity. */
export function networkCapacity(network: Network, shards: number): number {
  const perObject = objectCapacity(network).nodesPerObject;
  if (shards <= 1) return perObject;
  // Solve m + c sqrt(m) = perObject for the mean m per shard, with c = sqrt(2 ln S).
  const c = Math.sqrt(2 * Math.log(shards));
  const root = (-c + Math.sqrt(c * c + 4 * perObject)) / 2;
  // The largest shard never holds more than all nodes, so S shards carry at least one's worth.
  return Math.max(perObject, Math.floor(shards * root * root));
}

function withCpu(network: Network, demand: Omit<Demand, "cpu">): Demand {
  const c = network.calibration;
  const handled = demand.messagesIn - demand.pings;
  const cpuUs =
    handled * c.cpuPerMessageUs +
    demand.datagrams * c.cpuPerDatagramUs +
    demand.bytes * c.cpuPerByteUs;
  return { ...demand, cpu: cpuUs / 1e6 };
}
