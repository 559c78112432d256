/**
 * A WireGuard interface that `wg` configures, made by the kernel module (`ip link add IFACE type
 * wireguard`) or, on hosts without it, by a userspace implementation such as wireguard-go run as
 * `CMD IFACE`. The node and server roles' kernel backend (kernel.ts) and the mesh role's kernel
 * plane (mesh/kernel-plane.ts) both start from one: key set, MTU, up, its UDP port known.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatKey } from "../../shared/siderolink/keys.ts";
import { deleteLink, getLink, ip, setLinkUp, setMtu } from "../net/iproute2.ts";
import { uapiSocketPath } from "../wireguard/uapi-socket.ts";
import { LINK_MTU, type PeerStatus } from "./backend.ts";

/** How long the interface may take to open its UDP port after coming up. */
const LISTEN_PORT_WAIT_MS = 5_000;
/** How long wireguard-go may take to exit (and remove its socket) once its interface is gone. */
const USERSPACE_EXIT_WAIT_MS = 3_000;

export interface WgInterfaceOptions {
  readonly iface: string;
  readonly privateKey: Uint8Array;
  /** A userspace implementation to run as `CMD IFACE` instead of the kernel module. */
  readonly wireguardGo?: string | undefined;
  /** The UDP port to listen on; 0 or absent lets the implementation pick one. */
  readonly listenPort?: number;
  /** The mark (SO_MARK) on the interface's own UDP packets, for routing rules to match. */
  readonly fwmark?: number;
  /** Runs once the interface exists, before it is up (a failure removes the interface). */
  readonly beforeUp?: () => Promise<void>;
}

export interface WgInterface {
  readonly iface: string;
  /** The UDP port the interface listens on. */
  readonly listenPort: number;
  /** Deletes the interface (a userspace implementation exits with it). */
  remove(): Promise<void>;
}

export async function createWgInterface(options: WgInterfaceOptions): Promise<WgInterface> {
  const { iface } = options;
  if (await getLink(iface)) {
    throw new Error(`interface ${iface} already exists; remove it or choose another --iface`);
  }
  if (options.wireguardGo) {
    // It daemonizes: the command returns once the interface exists, its daemon lives on.
    await runCommand(options.wireguardGo, [iface], "exit");
  } else {
    await ip(["link", "add", iface, "type", "wireguard"]);
  }
  const remove = async (): Promise<void> => {
    await deleteLink(iface).catch(() => undefined);
    if (options.wireguardGo) {
      // wireguard-go exits when its interface goes and removes its socket then.
      const socketPath = uapiSocketPath(iface);
      const deadline = Date.now() + USERSPACE_EXIT_WAIT_MS;
      while (existsSync(socketPath) && Date.now() < deadline) await sleep(50);
    }
  };
  try {
    await options.beforeUp?.();
    await setPrivateKey(iface, options.privateKey);
    const settings: string[] = [];
    if (options.listenPort) settings.push("listen-port", String(options.listenPort));
    if (options.fwmark) settings.push("fwmark", `0x${options.fwmark.toString(16)}`);
    if (settings.length > 0) await wg(["set", iface, ...settings]);
    await setMtu(iface, LINK_MTU);
    await setLinkUp(iface);
    const deadline = Date.now() + LISTEN_PORT_WAIT_MS;
    for (;;) {
      const listenPort = Number((await wg(["show", iface, "listen-port"])).trim());
      if (listenPort !== 0) return { iface, listenPort, remove };
      if (Date.now() > deadline) throw new Error(`interface ${iface} opened no UDP port`);
      await sleep(50);
    }
  } catch (error) {
    await remove();
    throw error;
  }
}

/** Runs `wg ARGS`. */
export function wg(args: readonly string[]): Promise<string> {
  return runCommand("wg", args);
}

/**
 * `wg set IFACE private-key FILE` through a file only root can read, removed at once: keys
 * never go on a command line, and wg cannot read the socket Node gives a child as stdin.
 */
async function setPrivateKey(iface: string, privateKey: Uint8Array): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "siderolink-key-"));
  try {
    const file = join(directory, "private.key");
    writeFileSync(file, `${formatKey(privateKey)}\n`, { mode: 0o600 });
    await wg(["set", iface, "private-key", file]);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/**
 * `wg show IFACE dump`: a line for the interface, then one per peer, tab-separated. Endpoints
 * found in `endpointNames` (loopback bridges) are reported by the name given there.
 */
export function parseDump(
  text: string,
  endpointNames: ReadonlyMap<string, string> = new Map(),
): PeerStatus[] {
  const lines = text.trim().split("\n").slice(1);
  return lines
    .filter((line) => line !== "")
    .map((line) => {
      const [publicKey, , endpoint, , handshake, rx, tx] = line.split("\t");
      return {
        publicKey,
        endpoint: endpoint === "(none)" ? null : (endpointNames.get(endpoint) ?? endpoint),
        lastHandshake: Number(handshake) * 1000,
        rxBytes: Number(rx),
        txBytes: Number(tx),
      };
    });
}

/**
 * Runs a command to completion. `until: "exit"` resolves when the process exits even if a
 * daemon it started still holds its output pipes.
 */
function runCommand(
  command: string,
  args: readonly string[],
  until: "close" | "exit" = "close",
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "ENOENT"
          ? new Error(
              command === "wg"
                ? "the `wg` command is missing: install the Debian package wireguard-tools"
                : `${command}: command not found`,
            )
          : error,
      );
    });
    child.once(until, (code: number | null) => {
      if (code === 0) resolve(stdout);
      else
        reject(new Error(`${command} ${args.join(" ")} failed (status ${code}): ${stderr.trim()}`));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
