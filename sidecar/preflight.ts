/**
 * Checks made before anything is touched, each ending the command with its own exit status
 * and a sentence saying what to do.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import type { BackendKind } from "./backend/backend.ts";
import { kernelWireGuardAvailable } from "./backend/kernel.ts";
import { ExitCode, SidecarError } from "./exit-codes.ts";
import { loadPacketAddon } from "./native/addon.ts";

/** CAP_NET_ADMIN's bit in the capability sets of /proc/PID/status (linux/capability.h). */
const CAP_NET_ADMIN_BIT = 12n;

/** Whether this process holds CAP_NET_ADMIN in its effective set (root does, unless dropped). */
export function hasNetAdmin(statusFile = "/proc/self/status"): boolean {
  const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync(statusFile, "utf8"));
  if (effective === null) throw new Error(`${statusFile} has no CapEff line`);
  return ((BigInt(`0x${effective[1]}`) >> CAP_NET_ADMIN_BIT) & 1n) === 1n;
}

export function requireNetAdmin(): void {
  if (!hasNetAdmin()) {
    throw new SidecarError(
      ExitCode.NoNetAdmin,
      "must run as root or with CAP_NET_ADMIN: it creates a network interface, addresses and routes " +
        "(run it with sudo, or from the systemd unit, which grants the capability to its User=)",
    );
  }
}

/** The userspace backend's TUN and UDP I/O need the addon: fail now, not after contacting the relay. */
export function requirePacketAddon(): void {
  try {
    loadPacketAddon();
  } catch (error) {
    throw new SidecarError(ExitCode.NoAddon, (error as Error).message, { cause: error });
  }
}

export function requireTunDevice(path = "/dev/net/tun"): void {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
  } catch {
    throw new SidecarError(
      ExitCode.NoTun,
      `${path} is missing or not accessible: load the tun module (modprobe tun), or give the container the device (--device /dev/net/tun)`,
    );
  }
}

export type BackendChoice = BackendKind | "auto";

/**
 * The backend to run: `auto` picks the kernel module when the host has one, else userspace.
 * The kernel backend made by a userspace command (wireguard-go) needs no module.
 */
export async function resolveBackend(
  choice: BackendChoice,
  wireguardGo: string | undefined,
): Promise<BackendKind> {
  if (choice === "userspace") {
    requireTunDevice();
    requirePacketAddon();
    return "userspace";
  }
  if (choice === "kernel") {
    if (wireguardGo === undefined && !(await kernelWireGuardAvailable())) {
      throw new SidecarError(
        ExitCode.Failure,
        "--wireguard kernel: this host has no WireGuard kernel module; load it (modprobe wireguard), pass --wireguard-go /usr/bin/wireguard-go, or use --wireguard userspace",
      );
    }
    if (wireguardGo !== undefined) requireTunDevice();
    return "kernel";
  }
  if (await kernelWireGuardAvailable()) return "kernel";
  requireTunDevice();
  requirePacketAddon();
  return "userspace";
}
