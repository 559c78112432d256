/**
 * Transport keypairs and their rotation (WireGuard paper, section 5.4.7 and 6).
 *
 * A peer holds up to three: `current` sends; `previous` still receives packets in flight from
 * before the last handshake; `next` is a responder's new keypair, unconfirmed until the
 * initiator's first packet arrives on it (only then may the responder send with it).
 *
 * Counters are numbers, not bigints, so the per-packet path allocates nothing for them. They
 * are exact below 2^53 (`COUNTER_LIMIT`), which no keypair reaches before REJECT_AFTER_TIME
 * retires it; a received counter at or above it is rejected like one past REJECT_AFTER_MESSAGES.
 */
import { COUNTER_LIMIT } from "./constants.ts";
import type { TransportAead } from "./crypto.ts";
import { ReplayFilter } from "./replay.ts";

export class Keypair {
  readonly send: TransportAead;
  readonly receive: TransportAead;
  readonly created: number;
  readonly isInitiator: boolean;
  readonly localIndex: number;
  readonly remoteIndex: number;
  /** The next counter to send with. */
  sendCounter = 0;
  readonly replay = new ReplayFilter();

  constructor(init: {
    send: TransportAead;
    receive: TransportAead;
    created: number;
    isInitiator: boolean;
    localIndex: number;
    remoteIndex: number;
  }) {
    this.send = init.send;
    this.receive = init.receive;
    this.created = init.created;
    this.isInitiator = init.isInitiator;
    this.localIndex = init.localIndex;
    this.remoteIndex = init.remoteIndex;
  }
}

export class Keypairs {
  previous: Keypair | null = null;
  current: Keypair | null = null;
  next: Keypair | null = null;
  /** Called for every keypair that leaves the set, so its index can be released. */
  readonly #retire: (keypair: Keypair) => void;

  constructor(retire: (keypair: Keypair) => void) {
    this.#retire = retire;
  }

  /**
   * Installs a freshly derived keypair. An initiator has its confirmation (the response) and
   * sends with it at once; a responder parks it in `next` until the initiator uses it.
   */
  install(keypair: Keypair): void {
    const { previous, current, next } = this;
    if (keypair.isInitiator) {
      if (next !== null) {
        // The unconfirmed keypair may still receive; the current one is now two generations old.
        this.previous = next;
        this.next = null;
        this.#drop(current);
      } else {
        this.previous = current;
      }
      this.#drop(previous);
      this.current = keypair;
    } else {
      this.next = keypair;
      this.#drop(next);
      this.previous = null;
      this.#drop(previous);
    }
  }

  /** A packet authenticated under `keypair`; returns true if that confirmed `next`. */
  confirm(keypair: Keypair): boolean {
    if (this.next !== keypair) return false;
    this.#drop(this.previous);
    this.previous = this.current;
    this.current = keypair;
    this.next = null;
    return true;
  }

  /** Stops sending with the current and next keypairs; they still receive until they expire. */
  expireSending(): void {
    if (this.current !== null) this.current.sendCounter = COUNTER_LIMIT;
    if (this.next !== null) this.next.sendCounter = COUNTER_LIMIT;
  }

  clear(): void {
    this.#drop(this.previous);
    this.#drop(this.current);
    this.#drop(this.next);
    this.previous = this.current = this.next = null;
  }

  #drop(keypair: Keypair | null): void {
    if (keypair !== null) this.#retire(keypair);
  }
}
