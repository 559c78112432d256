import type { Tun, TunReadHandler } from "../../shared/wireguard/tun.ts";
import { loadPacketAddon, type PacketAddon } from "../native/addon.ts";

/** Default MTU of a new interface, as wireguard-go sets it (1500 minus IPv6 and WireGuard overhead). */
export const DEFAULT_MTU = 1420;
/** Packets drained per readable event; one JS call carries them all. */
export const DEFAULT_BATCH = 64;
/** A TUN packet without vnet headers is at most an IP packet: 65535 bytes. */
const SLOT_SIZE = 65535;

export interface LinuxTunOptions {
  /** Interface name, 1-15 bytes. An existing TUN interface of that name is attached to. */
  name: string;
  /** MTU to set; leave out to keep the kernel's (1500 for a new TUN). */
  mtu?: number;
  /** Packets per read batch. */
  batch?: number;
}

/** A Linux TUN interface (IFF_TUN | IFF_NO_PI). The interface exists until close(). */
export interface LinuxTun extends Tun {
  /** Packets write() could not hand to the kernel (queue full or interface down). */
  readonly writeDrops: number;
  /** Re-reads the MTU from the kernel, after `ip link set mtu` for example. */
  refreshMtu(): number;
}

export function openLinuxTun(options: LinuxTunOptions): LinuxTun {
  const native = loadPacketAddon();
  const { fd, name } = native.open(options.name);
  try {
    if (options.mtu !== undefined) native.setMtu(name, options.mtu);
    return new LinuxTunDevice(native, fd, name, options.batch ?? DEFAULT_BATCH);
  } catch (error) {
    native.close(fd);
    throw error;
  }
}

class LinuxTunDevice implements LinuxTun {
  readonly name: string;
  readonly closed: Promise<void>;
  #native: PacketAddon;
  #fd: number;
  #mtu: number;
  #batch: number;
  #reader: object | undefined;
  #open = true;
  #writeDrops = 0;
  #resolveClosed!: () => void;

  constructor(native: PacketAddon, fd: number, name: string, batch: number) {
    this.#native = native;
    this.#fd = fd;
    this.name = name;
    this.#batch = batch;
    this.#mtu = native.getMtu(name);
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
  }

  get mtu(): number {
    return this.#mtu;
  }

  get writeDrops(): number {
    return this.#writeDrops;
  }

  refreshMtu(): number {
    if (this.#open) this.#mtu = this.#native.getMtu(this.name);
    return this.#mtu;
  }

  start(handler: TunReadHandler): void {
    if (!this.#open) throw new Error(`TUN ${this.name} is closed`);
    if (this.#reader !== undefined) throw new Error(`TUN ${this.name} is already started`);
    const slots = new ArrayBuffer(SLOT_SIZE * this.#batch);
    const lengths = new Uint32Array(this.#batch);
    const packets: Uint8Array[] = [];
    const onBatch = (count: number): void => {
      packets.length = count;
      for (let i = 0; i < count; i++) packets[i] = new Uint8Array(slots, i * SLOT_SIZE, lengths[i]);
      handler(packets);
    };
    const onGone = (): void => {
      this.#reader = undefined;
      void this.close();
    };
    this.#reader = this.#native.startReader(this.#fd, slots, SLOT_SIZE, lengths, onBatch, onGone);
  }

  write(packets: readonly Uint8Array[]): void {
    if (!this.#open || packets.length === 0) return;
    this.#writeDrops += packets.length - this.#native.write(this.#fd, packets);
  }

  async close(): Promise<void> {
    if (!this.#open) return this.closed;
    this.#open = false;
    if (this.#reader !== undefined) this.#native.stopReader(this.#reader);
    this.#reader = undefined;
    this.#native.close(this.#fd);
    this.#resolveClosed();
    return this.closed;
  }
}
