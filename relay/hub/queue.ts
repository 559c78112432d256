/**
 * A destination's backlog while its socket is congested: a ring that keeps the newest
 * datagrams and drops the oldest, bounded in count and bytes. Inside a TCP transport a deep
 * queue only turns loss into latency, so it stays short.
 */
export interface QueueLimits {
  /** Datagrams held at most. */
  readonly datagrams: number;
  /** Datagram bytes held at most. */
  readonly bytes: number;
}

export class DatagramQueue {
  readonly #limits: QueueLimits;
  readonly #data: (Uint8Array | undefined)[];
  readonly #tags: (Uint8Array | undefined)[];
  #head = 0;
  #length = 0;
  #bytes = 0;

  constructor(limits: QueueLimits) {
    this.#limits = limits;
    this.#data = new Array(limits.datagrams);
    this.#tags = new Array(limits.datagrams);
  }

  get length(): number {
    return this.#length;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Copies the datagram (and tag) in, dropping the oldest entries to make room; returns how many
   * were dropped. A datagram larger than the whole byte budget is itself dropped (returns 1).
   */
  push(datagram: Uint8Array, tag: Uint8Array | undefined): number {
    if (datagram.length > this.#limits.bytes) return 1;
    let dropped = 0;
    while (
      this.#length === this.#limits.datagrams ||
      this.#bytes + datagram.length > this.#limits.bytes
    ) {
      this.shift();
      dropped++;
    }
    const index = (this.#head + this.#length) % this.#limits.datagrams;
    this.#data[index] = datagram.slice();
    this.#tags[index] = tag?.slice();
    this.#length++;
    this.#bytes += datagram.length;
    return dropped;
  }

  /** The oldest datagram without removing it. */
  peekData(): Uint8Array {
    return this.#data[this.#head]!;
  }

  peekTag(): Uint8Array | undefined {
    return this.#tags[this.#head];
  }

  shift(): void {
    const data = this.#data[this.#head]!;
    this.#bytes -= data.length;
    this.#data[this.#head] = undefined;
    this.#tags[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#limits.datagrams;
    this.#length--;
  }

  /**
   * Moves every entry, oldest first, into `datagrams` (and `tags`, where the entry has one) from
   * index 0, and empties the queue; returns how many moved.
   */
  moveInto(datagrams: Uint8Array[], tags: Uint8Array[]): number {
    const count = this.#length;
    for (let i = 0; i < count; i++) {
      datagrams[i] = this.peekData();
      const tag = this.peekTag();
      if (tag) tags[i] = tag;
      this.shift();
    }
    return count;
  }

  clear(): void {
    while (this.#length > 0) this.shift();
  }
}
