import type { Tun, TunReadHandler } from "../../../shared/wireguard/tun.ts";

/** An in-memory Tun: tests `inject` packets as if read from the interface and `take` writes. */
export class MemoryTun implements Tun {
  readonly name: string;
  readonly mtu: number;
  readonly closed: Promise<void>;
  /** Every `write` call's packets (copied), oldest first. */
  writes: Uint8Array[][] = [];
  #handler: TunReadHandler | null = null;
  #resolveClosed: () => void = () => {};

  constructor(name = "wgtest", mtu = 1420) {
    this.name = name;
    this.mtu = mtu;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  start(handler: TunReadHandler): void {
    this.#handler = handler;
  }

  write(packets: readonly Uint8Array[]): void {
    this.writes.push(packets.map((packet) => packet.slice()));
  }

  /** Hands packets to the device as one read batch. */
  inject(packets: readonly Uint8Array[]): void {
    if (this.#handler === null) throw new Error(`tun ${this.name} not started`);
    this.#handler(packets);
  }

  /** Packets written since the last call, flattened. */
  take(): Uint8Array[] {
    const packets = this.writes.flat();
    this.writes = [];
    return packets;
  }

  async close(): Promise<void> {
    this.#handler = null;
    this.#resolveClosed();
  }
}
