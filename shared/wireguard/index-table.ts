/**
 * The device's local indices (wireguard-go indextable.go). Every handshake message carries
 * its sender's 32-bit index, and the other side names it as the receiver of every response,
 * cookie reply and transport message it sends back. An index first stands for a handshake in
 * progress, then for the keypair that handshake derived, so an incoming message finds its
 * peer and keys with one lookup instead of trying each peer.
 *
 * Indices are random: they reveal nothing about how many peers or sessions the device has.
 * 0 is never handed out, because a handshake's `localIndex` of 0 means "none".
 */
import type { CryptoProvider } from "./crypto.ts";
import type { Keypair } from "./keypair.ts";
import { readUint32LE } from "./noise-helpers.ts";

export interface IndexEntry<P> {
  readonly peer: P;
  /** Null while the index stands for a handshake in progress. */
  keypair: Keypair | null;
}

export class IndexTable<P> {
  readonly #crypto: Pick<CryptoProvider, "randomBytes">;
  readonly #entries = new Map<number, IndexEntry<P>>();

  constructor(crypto: Pick<CryptoProvider, "randomBytes">) {
    this.#crypto = crypto;
  }

  /** Indices in use. */
  get size(): number {
    return this.#entries.size;
  }

  /** Registers a fresh random index, unused and not 0, for a handshake of `peer`. */
  newIndexForHandshake(peer: P): number {
    for (;;) {
      const index = readUint32LE(this.#crypto.randomBytes(4), 0);
      if (index !== 0 && !this.#entries.has(index)) {
        this.#entries.set(index, { peer, keypair: null });
        return index;
      }
    }
  }

  /**
   * Points the index of the handshake that derived `keypair` at it. An index released in the
   * meantime stays released: the keypair then receives nothing.
   */
  swapIndexForKeypair(keypair: Keypair): void {
    const entry = this.#entries.get(keypair.localIndex);
    if (entry !== undefined) entry.keypair = keypair;
  }

  delete(index: number): void {
    this.#entries.delete(index);
  }

  lookup(index: number): IndexEntry<P> | undefined {
    return this.#entries.get(index);
  }

  /** The peer whose handshake in progress holds `index`; null for a keypair's index or none. */
  lookupHandshake(index: number): P | null {
    const entry = this.#entries.get(index);
    return entry !== undefined && entry.keypair === null ? entry.peer : null;
  }
}
