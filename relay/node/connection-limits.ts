/**
 * What one client may hold of the Node relay's connections, HTTP/2 sessions and streams. Without
 * these, half-open streams (headers sent, body never ended) and idle h2c sessions pile up for
 * as long as the attacker likes: Node's default stream cap is 2^32-1 and sessions never time
 * out. The defaults suit a relay for tens of thousands of nodes, each one connection.
 */
import type net from "node:net";

export interface ConnectionLimits {
  /** TCP connections open at once, every client together; more are closed at once. */
  readonly maxConnections: number;
  /** TCP connections open at once from one client address (a NAT hides a rack behind one). */
  readonly maxConnectionsPerAddress: number;
  /** Streams one HTTP/2 session may have open (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused. */
  readonly maxConcurrentStreams: number;
  /** Memory one HTTP/2 session may buffer (nghttp2 state, headers, queued frames), in MB. */
  readonly maxSessionMemoryMb: number;
  /** An HTTP/2 session with no stream open this long is closed (GOAWAY). */
  readonly idleSessionTimeoutMs: number;
  /** A unary Provision call not answered this long after its headers ends DEADLINE_EXCEEDED. */
  readonly provisionDeadlineMs: number;
  /** A CreateStream whose first message has not arrived this long after its headers ends DEADLINE_EXCEEDED. */
  readonly firstMessageDeadlineMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 25_000,
  maxConnectionsPerAddress: 512,
  maxConcurrentStreams: 100,
  maxSessionMemoryMb: 4,
  idleSessionTimeoutMs: 120_000,
  provisionDeadlineMs: 15_000,
  firstMessageDeadlineMs: 15_000,
};

/** Checks each limit is a positive number, naming the one that is not. */
export function resolveConnectionLimits(given: Partial<ConnectionLimits> = {}): ConnectionLimits {
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...given };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isFinite(value) || value <= 0)
      throw new RangeError(`connection limit ${name} must be a positive number, got ${value}`);
  }
  return limits;
}

/**
 * Counts open connections overall and per address; `admit` closes a socket over either cap at
 * once (before it costs a parser or a session) and says whether it was kept.
 */
export function createConnectionGate(limits: ConnectionLimits): {
  admit(socket: net.Socket): boolean;
  readonly open: number;
} {
  const perAddress = new Map<string, number>();
  let open = 0;
  return {
    admit(socket) {
      const address = socket.remoteAddress ?? "";
      const fromAddress = perAddress.get(address) ?? 0;
      if (open >= limits.maxConnections || fromAddress >= limits.maxConnectionsPerAddress) {
        socket.destroy();
        return false;
      }
      open++;
      perAddress.set(address, fromAddress + 1);
      socket.once("close", () => {
        open--;
        const left = (perAddress.get(address) ?? 1) - 1;
        if (left === 0) perAddress.delete(address);
        else perAddress.set(address, left);
      });
      return true;
    },
    get open() {
      return open;
    },
  };
}
