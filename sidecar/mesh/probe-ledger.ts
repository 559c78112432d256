/**
 * Which probe a handshake response answers. The kernel plane copies a relayed peer's handshake
 * initiations to the peer's candidates from its probe socket, and pins the peer to a candidate
 * when a response comes back to that socket. The sidecar cannot authenticate a response (the
 * interface holds the handshake state), so it pins only on a response that names, as its
 * receiver index, the sender index of an initiation it copied for that peer in the last
 * LEDGER_TTL_MS, and that comes from one of that peer's candidates. The index is random per
 * handshake and visible only on the paths the probe took: an off-path sender cannot move a peer
 * off the relay with forged responses; whoever is on the path could drop its packets anyway.
 *
 * Layout (shared/wireguard/constants.ts): an initiation's sender index is the u32 LE at byte 4,
 * a response's receiver index the u32 LE at byte 8.
 */
import {
  INITIATION_SENDER,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
  MessageType,
  REKEY_TIMEOUT,
  RESPONSE_RECEIVER,
} from "../../shared/wireguard/constants.ts";

/**
 * How long a copied initiation may be answered: WireGuard sends a new one (a new index) after
 * REKEY_TIMEOUT, and a response later than twice that is not worth a switch.
 */
export const LEDGER_TTL_MS = 2 * REKEY_TIMEOUT;

export class ProbeLedger<Owner> {
  readonly #byIndex = new Map<number, { readonly owner: Owner; readonly at: number }>();

  /** Notes an initiation (148 bytes, type 1) copied to `owner`'s candidates at `now` (ms). */
  note(owner: Owner, initiation: Uint8Array, now: number): void {
    if (initiation.length !== MESSAGE_INITIATION_SIZE || initiation[0] !== MessageType.Initiation)
      return;
    // Entries go in in time order: the stale ones are at the front.
    for (const [index, entry] of this.#byIndex) {
      if (now - entry.at <= LEDGER_TTL_MS) break;
      this.#byIndex.delete(index);
    }
    const index = readU32(initiation, INITIATION_SENDER);
    this.#byIndex.delete(index);
    this.#byIndex.set(index, { owner, at: now });
  }

  /**
   * The owner of the copied initiation that `response` answers, when it is a handshake response
   * to one noted in the last LEDGER_TTL_MS; each initiation is answered once.
   */
  answered(response: Uint8Array, now: number): Owner | undefined {
    if (response.length !== MESSAGE_RESPONSE_SIZE || response[0] !== MessageType.Response)
      return undefined;
    const index = readU32(response, RESPONSE_RECEIVER);
    const entry = this.#byIndex.get(index);
    if (entry === undefined || now - entry.at > LEDGER_TTL_MS) return undefined;
    this.#byIndex.delete(index);
    return entry.owner;
  }

  /** Forgets every initiation noted for `owner` (a peer removed). */
  forget(owner: Owner): void {
    for (const [index, entry] of this.#byIndex) {
      if (entry.owner === owner) this.#byIndex.delete(index);
    }
  }

  get size(): number {
    return this.#byIndex.size;
  }
}

function readU32(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset] |
      (bytes[offset + 1] << 8) |
      (bytes[offset + 2] << 16) |
      (bytes[offset + 3] << 24)) >>>
    0
  );
}
