import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { isSea } from "node:sea";
import { fileURLToPath } from "node:url";

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
export const ADDRESS_RECORD_SIZE = 24;

/** The addon's file name beside a single executable and under prebuilds/ of the npm package. */
export const ADDON_FILE = "tun.node";

let addon: PacketAddon | undefined;

/**
 * Where the addon may be, in order: beside the single executable (which cannot embed it);
 * node-gyp's output in a checkout; the prebuilt copy for this CPU that the npm package ships
 * beside its bundled code.
 */
export function addonCandidates(): string[] {
  if (isSea()) return [join(dirname(process.execPath), ADDON_FILE)];
  const here = dirname(fileURLToPath(import.meta.url));
  return [
    join(here, "build", "Release", ADDON_FILE),
    join(here, "prebuilds", `linux-${process.arch}`, ADDON_FILE),
  ];
}

/** Loads the addon on first use, so that importing a module that may use it never throws. */
export function loadPacketAddon(): PacketAddon {
  if (addon !== undefined) return addon;
  const candidates = addonCandidates();
  const path = candidates.find((candidate) => existsSync(candidate));
  if (path === undefined) {
    throw new Error(
      `cannot find the packet I/O addon at ${candidates.join(" or ")}: ` +
        (isSea()
          ? `keep ${ADDON_FILE} beside ${process.execPath}, as the release archive has it`
          : `build it with "npm run build:addon" (needs python3, make and a C compiler)`),
    );
  }
  const module = { exports: {} };
  try {
    // process.dlopen rather than require: a single executable's require only loads builtins.
    process.dlopen(module, path);
  } catch (cause) {
    throw new Error(
      `cannot load the packet I/O addon ${path}: ${(cause as Error).message}; rebuild it with "npm run build:addon"`,
      { cause },
    );
  }
  addon = module.exports as PacketAddon;
  return addon;
}
