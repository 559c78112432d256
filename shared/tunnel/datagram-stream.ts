/**
 * The server side of a `CreateStream` response: datagrams wait here until the gRPC stream takes
 * them, one PeerPacket each. The relay (Node) and the site gateway both answer Talos's stream
 * this way. `push` copies, since callers hand over views that last only for their call; `end`
 * finishes the stream, with an error when it must end with a gRPC status.
 */
export class DatagramStream {
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  get ended(): boolean {
    return this.#ended;
  }

  /** Bytes waiting to be written. */
  get bufferedAmount(): number {
    return this.#queuedBytes;
  }

  push(datagram: Uint8Array): void {
    if (this.#ended) return;
    const copy = datagram.slice();
    this.#queue.push(copy);
    this.#queuedBytes += copy.length;
    this.#signal();
  }

  /** Ends the stream once the queue drains; the first call decides how. */
  end(error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#signal();
  }

  /** The response messages; throws the end's error, if any, after the last datagram. */
  async *packets(): AsyncGenerator<{ Data: Uint8Array }> {
    for (;;) {
      const datagram = this.#queue.shift();
      if (datagram) {
        this.#queuedBytes -= datagram.length;
        yield { Data: datagram };
        continue;
      }
      if (this.#ended) {
        if (this.#error) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
