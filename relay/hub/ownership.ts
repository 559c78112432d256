/**
 * Who may carry a node's virtual address. An address alone proves nothing: it travels in logs,
 * URLs and Provision replies. So a stream owns an address only when it is the first for it, or
 * once it has proven that it holds the node's WireGuard static key:
 *
 *   1. A new stream for an address that already has an owner is a *candidate*. The owner keeps
 *      the address: it still gets the server's transport data, and the candidate gets none.
 *   2. The candidate may send handshake initiations only; each is forwarded to the uplink under
 *      the address, and its sender index i (bytes 4..8) is remembered.
 *   3. The server answers an initiation it accepts with a handshake response whose receiver index
 *      is i. It accepts only an initiation sealed by the peer's static key with a TAI64N time
 *      newer than any it saw, so a replayed initiation earns no response. A response for i makes
 *      the candidate the owner; the old owner is closed with "peer replaced".
 *   4. Until then only responses and cookie replies (receiver index at bytes 4..8) for an index
 *      the candidate sent reach it. Candidates per address are bounded (the newest displaces the
 *      oldest), and one that has not proven itself within `candidateTimeoutMs` is closed.
 *
 * When the owner goes away, the newest candidate takes its place, as it would had it connected
 * a moment later: a stream arriving at an address without an owner needs no proof (upstream's
 * rule for every stream), and the proof step guards only against pre-empting a live owner.
 *
 * Clients need nothing new. Upstream SideroLink's CreateStream (siderolabs/siderolink,
 * pkg/wgtunnel/wggrpc/service.go) lets any new stream cancel the previous one with Aborted "peer
 * replaced"; the clients it serves are WireGuard devices that initiate a handshake whenever they
 * have no session: Talos makes a new key every boot, so a restarted Talos (or node sidecar)
 * always handshakes first, and a running one rekeys at least every REKEY_AFTER_TIME (120 s,
 * WireGuard paper 6.1), which a candidate whose old stream lingers half-open then passes; a
 * lingering stream is gone anyway after the liveness timeout, and its candidate inherits.
 */
import {
  COOKIE_REPLY_RECEIVER,
  INITIATION_SENDER,
  MessageType,
  RESPONSE_RECEIVER,
} from "../../shared/wireguard/constants.ts";

/** Candidate streams one address may have beside its owner. */
export const MAX_CANDIDATES_PER_ADDRESS = 3;
/**
 * How long a candidate may take to prove itself: WireGuard retries an unanswered initiation for
 * REKEY_ATTEMPT_TIME (90 s); past that the client gives up on this attempt anyway.
 */
export const CANDIDATE_TIMEOUT_MS = 90_000;
/** Sender indices remembered per stream: WireGuard draws a new one for every retry. */
const REMEMBERED_INITIATIONS = 4;

export const REASON_CANDIDATE_DISPLACED =
  "a newer stream for this address is waiting to prove itself; reconnect to try again";

/** The last few sender indices of initiations one stream sent, in a small ring. */
export class InitiationIndices {
  readonly #indices = new Uint32Array(REMEMBERED_INITIATIONS);
  #count = 0;

  /** Starts with indices kept in a socket's attachment across a Durable Object's eviction. */
  constructor(kept: readonly number[] = []) {
    for (const index of kept.slice(-REMEMBERED_INITIATIONS)) this.#indices[this.#count++] = index;
  }

  /** Remembers the sender index of `initiation` (a well-formed handshake initiation). */
  record(initiation: Uint8Array): void {
    this.#indices[this.#count % REMEMBERED_INITIATIONS] = readIndex(initiation, INITIATION_SENDER);
    this.#count++;
  }

  /** The remembered indices, for a candidate's attachment. */
  values(): number[] {
    return Array.from(this.#indices.subarray(0, Math.min(this.#count, REMEMBERED_INITIATIONS)));
  }

  has(index: number): boolean {
    const known = Math.min(this.#count, REMEMBERED_INITIATIONS);
    for (let i = 0; i < known; i++) if (this.#indices[i] === index) return true;
    return false;
  }
}

/**
 * The receiver index of a well-formed handshake response or cookie reply: the sender index of
 * the initiation it answers. Undefined for other message types.
 */
export function answeredIndex(datagram: Uint8Array): number | undefined {
  switch (datagram[0]) {
    case MessageType.Response:
      return readIndex(datagram, RESPONSE_RECEIVER);
    case MessageType.CookieReply:
      return readIndex(datagram, COOKIE_REPLY_RECEIVER);
    default:
      return undefined;
  }
}

/** A little-endian u32 index at `offset`. */
function readIndex(datagram: Uint8Array, offset: number): number {
  return (
    (datagram[offset] |
      (datagram[offset + 1] << 8) |
      (datagram[offset + 2] << 16) |
      (datagram[offset + 3] << 24)) >>>
    0
  );
}
