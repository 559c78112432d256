/**
 * Sliding-window replay filter for transport counters (RFC 6479, as in wireguard-go): a ring
 * of bitmap words, so advancing the window clears whole words instead of shifting bits.
 *
 * A counter is accepted once, if it is newer than anything seen, or within `WINDOW_SIZE` of the
 * newest and not seen before. Check a counter only after its packet authenticated, or a forged
 * packet could advance the window.
 */

const WORD_BITS = 32;
const RING_WORDS = 256;
/** One word of the ring is always being reused, so the usable window is one word short. */
export const WINDOW_SIZE = (RING_WORDS - 1) * WORD_BITS;

export class ReplayFilter {
  #last = 0;
  readonly #ring = new Uint32Array(RING_WORDS);

  reset(): void {
    this.#last = 0;
    this.#ring.fill(0);
  }

  /** Accepts `counter` (recording it) or rejects it as a replay, too old, or over `limit`. */
  validate(counter: number, limit: number): boolean {
    if (counter >= limit) return false;
    let word = Math.floor(counter / WORD_BITS);
    if (counter > this.#last) {
      const current = Math.floor(this.#last / WORD_BITS);
      const advance = Math.min(word - current, RING_WORDS);
      for (let i = 1; i <= advance; i++) this.#ring[(current + i) % RING_WORDS] = 0;
      this.#last = counter;
    } else if (this.#last - counter > WINDOW_SIZE) {
      return false;
    }
    word %= RING_WORDS;
    const bit = 1 << (counter % WORD_BITS);
    const old = this.#ring[word];
    if ((old & bit) !== 0) return false;
    this.#ring[word] = old | bit;
    return true;
  }
}
