/**
 * Sliding-window replay filter for transport counters (RFC 6479, as in wireguard-go): a ring
 * of bitmap words, so advancing the window clears whole words instead of shifting bits.
 *
 * A counter is accepted once, if it is newer than anything seen, or within `WindowSize` of the
 * newest and not seen before. Check a counter only after its packet authenticated, or a forged
 * packet could advance the window.
 */

const WordBits = 32;
const RingWords = 256;
/** One word of the ring is always being reused, so the usable window is one word short. */
export const WindowSize = (RingWords - 1) * WordBits;

export class ReplayFilter {
  private last = 0;
  private readonly ring = new Uint32Array(RingWords);

  reset(): void {
    this.last = 0;
    this.ring.fill(0);
  }

  /** Accepts `counter` (recording it) or rejects it as a replay, too old, or over `limit`. */
  validate(counter: number, limit: number): boolean {
    if (counter >= limit) return false;
    let word = Math.floor(counter / WordBits);
    if (counter > this.last) {
      const current = Math.floor(this.last / WordBits);
      const advance = Math.min(word - current, RingWords);
      for (let i = 1; i <= advance; i++) this.ring[(current + i) % RingWords] = 0;
      this.last = counter;
    } else if (this.last - counter > WindowSize) {
      return false;
    }
    word %= RingWords;
    const bit = 1 << (counter % WordBits);
    const old = this.ring[word];
    if ((old & bit) !== 0) return false;
    this.ring[word] = old | bit;
    return true;
  }
}
