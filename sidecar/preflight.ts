/**
 * Checks made before anything is touched, each ending the command with its own exit status
 * and a sentence saying what to do.
 */
import { accessSync, constants } from "node:fs";
import type { BackendKind } from "./backend/backend.ts";
import { kernelWireGuardAvailable } from "./backend/kernel.ts";
import { ExitCode, SidecarError } from "./exit-codes.ts";

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new SidecarError(
      ExitCode.NotRoot,
      "must run as root: it creates a network interface, addresses and routes (run it with sudo, or from the systemd unit in sidecar/systemd/)",
    );
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
  return "userspace";
}
