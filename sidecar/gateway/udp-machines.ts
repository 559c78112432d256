/**
 * Which LAN address belongs to which machine in UDP mode: a machine provisions over TCP, and
 * its kernel WireGuard then sends from the same address, so the Provision's source address
 * names the virtual address (`grpc_peer_addr_port`) its datagrams go out under. One machine per
 * LAN address; a later Provision from the address replaces the earlier one. Datagrams from any
 * other address are refused.
 *
 * Kept in the state directory (GATEWAY_MACHINES_FILE, JSON `{ "LAN address": "[virtual]:port" }`)
 * so that a restarted gateway carries on the machines' flows without them provisioning again.
 */
import { readStateFile, writeStateFile } from "../state.ts";

export const GATEWAY_MACHINES_FILE = "gateway-udp-machines.json";

export class UdpMachines {
  readonly #directory: string;
  readonly #byLan: Map<string, string>;

  constructor(directory: string) {
    this.#directory = directory;
    this.#byLan = new Map(Object.entries(readMachines(directory)));
  }

  get size(): number {
    return this.#byLan.size;
  }

  /** The virtual `[addr]:port` of the machine at `lan`, if one provisioned from there. */
  get(lan: string): string | undefined {
    return this.#byLan.get(lan);
  }

  set(lan: string, peerAddrPort: string): void {
    if (this.#byLan.get(lan) === peerAddrPort) return;
    this.#byLan.set(lan, peerAddrPort);
    this.#save();
  }

  delete(lan: string): void {
    if (this.#byLan.delete(lan)) this.#save();
  }

  /** Forgets every LAN address mapped to `peerAddrPort`. */
  deletePeer(peerAddrPort: string): void {
    let changed = false;
    for (const [lan, peer] of this.#byLan) {
      if (peer !== peerAddrPort) continue;
      this.#byLan.delete(lan);
      changed = true;
    }
    if (changed) this.#save();
  }

  #save(): void {
    writeStateFile(
      this.#directory,
      GATEWAY_MACHINES_FILE,
      JSON.stringify(Object.fromEntries(this.#byLan)),
    );
  }
}

function readMachines(directory: string): Record<string, string> {
  const text = readStateFile(directory, GATEWAY_MACHINES_FILE);
  if (text === undefined) return {};
  try {
    const value: unknown = JSON.parse(text);
    if (
      typeof value === "object" &&
      value !== null &&
      !Array.isArray(value) &&
      Object.values(value).every((peer) => typeof peer === "string")
    )
      return value as Record<string, string>;
  } catch {}
  throw new Error(
    `${directory}/${GATEWAY_MACHINES_FILE} is not a JSON object of LAN address to virtual endpoint; ` +
      "delete it (UDP machines then provision again within 275 s)",
  );
}
