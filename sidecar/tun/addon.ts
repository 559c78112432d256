import { createRequire } from "node:module";

/**
 * The N-API addon for Linux packet I/O built from native/ (contract in native/addon.c): TUN
 * devices, batched UDP (recvmmsg/sendmmsg), and a uv_poll reader that drains either in
 * batches into caller-provided slots.
 */
export interface PacketAddon {
  open(name: string): { fd: number; name: string };
  getMtu(name: string): number;
  setMtu(name: string, mtu: number): void;
  write(fd: number, packets: readonly Uint8Array[]): number;
  udpOpen(port: number, address: Uint8Array): { fd: number; port: number; family: 4 | 6 };
  udpSend(
    fd: number,
    family: 4 | 6,
    datagrams: readonly Uint8Array[],
    address: Uint8Array,
    port: number,
    scopeId: number,
  ): number;
  startReader(
    fd: number,
    slots: ArrayBuffer,
    slotSize: number,
    lengths: Uint32Array,
    onBatch: (count: number) => void,
    onGone: (code: string) => void,
    addresses?: Uint8Array,
  ): object;
  stopReader(reader: object): void;
  close(fd: number): void;
}

/** Bytes per sender record that a UDP reader writes into `addresses`. */
export const AddressRecordSize = 24;

const addonPath = "./build/Release/tun.node";
let addon: PacketAddon | undefined;

/** Loads the addon on first use, so that importing a module that may use it never throws. */
export function loadPacketAddon(): PacketAddon {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(addonPath) as PacketAddon;
    } catch (cause) {
      throw new Error(
        `cannot load the packet I/O addon sidecar/tun/${addonPath.slice(2)}: build it with ` +
          `"npx node-gyp rebuild -C sidecar/tun" (needs gcc, make and Node headers)`,
        { cause },
      );
    }
  }
  return addon;
}
