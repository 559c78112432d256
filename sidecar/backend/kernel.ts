/**
 * The kernel backend: a WireGuard interface configured with `wg`, made by the kernel module
 * (`ip link add IFACE type wireguard`) or, on hosts without it, by a userspace implementation
 * such as wireguard-go (`--wireguard-go CMD`, or WG_QUICK_USERSPACE_IMPLEMENTATION as wg-quick
 * reads it).
 *
 * The interface cannot speak to a WebSocket, so each tunnel endpoint gets a UDP socket on
 * 127.0.0.1 owned by the sidecar, and the peer's endpoint points there: what WireGuard sends to
 * it goes into the tunnel, and what the tunnel brings for that endpoint is sent from it to the
 * interface's listen port. On the server, each node has its own socket, so the interface tells
 * nodes apart by their loopback ports.
 */
import { spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatKey } from "../../shared/siderolink/keys.ts";
import type { StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";
import { createStreamEndpoints } from "../bind/stream-endpoints.ts";
import { type ForwardFilter, installForwardFilter } from "../net/forward-filter.ts";
import { deleteLink, getLink, ip, setLinkUp, setMtu } from "../net/iproute2.ts";
import { uapiSocketPath } from "../wireguard/uapi-socket.ts";
import {
  type BackendOptions,
  LINK_MTU,
  type PeerStatus,
  type WireGuardBackend,
} from "./backend.ts";

export interface KernelBackendOptions extends BackendOptions {
  /** A userspace implementation to run as `CMD IFACE` instead of the kernel module. */
  readonly wireguardGo?: string | undefined;
}

/** How long the interface may take to open its UDP port after coming up. */
const LISTEN_PORT_WAIT_MS = 5_000;
const LOOPBACK = "127.0.0.1";

interface Bridge {
  readonly socket: Socket;
  readonly endpoint: StreamEndpoint;
  readonly port: number;
  readonly pending: Buffer[];
  flushing: boolean;
  users: number;
}

/** Whether this host can make kernel WireGuard interfaces. */
export async function kernelWireGuardAvailable(): Promise<boolean> {
  if (existsSync("/sys/module/wireguard")) return true;
  const probe = `slprobe${process.pid % 100000}`;
  try {
    await ip(["link", "add", probe, "type", "wireguard"]);
  } catch {
    return false;
  }
  await deleteLink(probe).catch(() => undefined);
  return true;
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

export async function createKernelBackend(
  options: KernelBackendOptions,
): Promise<WireGuardBackend> {
  const { iface } = options;
  const endpoints = createStreamEndpoints();
  if (await getLink(iface)) {
    throw new Error(`interface ${iface} already exists; remove it or choose another --iface`);
  }
  if (options.wireguardGo) {
    // It daemonizes: the command returns once the interface exists, its daemon lives on.
    await runCommand(options.wireguardGo, [iface], "exit");
  } else {
    await ip(["link", "add", iface, "type", "wireguard"]);
  }
  const bridges = new Map<string, Bridge>();
  const peerEndpoints = new Map<string, string>();
  let unknownEndpoint = 0;
  let sendErrors = 0;
  let listenPort = 0;
  const onSent = (error: Error | null): void => {
    if (error) sendErrors++;
  };

  let forwardFilter: ForwardFilter | undefined;
  const removeInterface = async (): Promise<void> => {
    await forwardFilter?.remove().catch(() => undefined);
    await deleteLink(iface).catch(() => undefined);
    if (options.wireguardGo) {
      // wireguard-go exits when its interface goes and removes its socket then.
      const socketPath = uapiSocketPath(iface);
      const deadline = Date.now() + 3000;
      while (existsSync(socketPath) && Date.now() < deadline) await sleep(50);
    }
  };

  try {
    // Before the interface is up, so no packet is forwarded between nodes in between.
    if (options.serverAddress) forwardFilter = await installForwardFilter(iface);
    await setPrivateKey(iface, options.privateKey);
    await setMtu(iface, LINK_MTU);
    await setLinkUp(iface);
    const deadline = Date.now() + LISTEN_PORT_WAIT_MS;
    while (listenPort === 0) {
      listenPort = Number((await wg(["show", iface, "listen-port"])).trim());
      if (listenPort !== 0) break;
      if (Date.now() > deadline) throw new Error(`interface ${iface} opened no UDP port`);
      await sleep(50);
    }
  } catch (error) {
    await removeInterface();
    throw error;
  }

  const openBridge = async (endpoint: StreamEndpoint): Promise<Bridge> => {
    const existing = bridges.get(endpoint.key);
    if (existing) return existing;
    const socket = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, LOOPBACK, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const bridge: Bridge = {
      socket,
      endpoint,
      port: socket.address().port,
      pending: [],
      flushing: false,
      users: 0,
    };
    const flush = (): void => {
      bridge.flushing = false;
      if (bridge.pending.length === 0) return;
      options.sink(bridge.pending, endpoint);
      bridge.pending.length = 0;
    };
    socket.on("message", (message, from) => {
      // Only the interface may use the bridge: anything else on loopback is not WireGuard's.
      if (from.port !== listenPort) return;
      bridge.pending.push(message);
      if (!bridge.flushing) {
        bridge.flushing = true;
        setImmediate(flush);
      }
    });
    socket.on("error", () => sendErrors++);
    bridges.set(endpoint.key, bridge);
    return bridge;
  };

  const releaseBridge = (key: string | undefined): void => {
    const bridge = key === undefined ? undefined : bridges.get(key);
    if (!bridge || --bridge.users > 0) return;
    bridges.delete(key!);
    bridge.socket.close();
  };

  return {
    kind: "kernel",
    iface,
    endpoint: (tag, port) => endpoints.get(tag, port),
    deliver(datagrams, from) {
      const bridge = bridges.get(from.key);
      if (!bridge) {
        unknownEndpoint += datagrams.length;
        return;
      }
      for (const datagram of datagrams) bridge.socket.send(datagram, listenPort, LOOPBACK, onSent);
    },
    async setPeer(peer) {
      const key = formatKey(peer.publicKey);
      let endpointText: string;
      if (typeof peer.endpoint === "string") {
        endpointText = peer.endpoint;
        releaseBridge(peerEndpoints.get(key));
        peerEndpoints.delete(key);
      } else {
        const previous = peerEndpoints.get(key);
        if (previous !== peer.endpoint.key) {
          const bridge = await openBridge(peer.endpoint);
          bridge.users++;
          releaseBridge(previous);
          peerEndpoints.set(key, peer.endpoint.key);
        }
        endpointText = `${LOOPBACK}:${bridges.get(peer.endpoint.key)!.port}`;
      }
      await wg([
        "set",
        iface,
        "peer",
        key,
        "endpoint",
        endpointText,
        "allowed-ips",
        peer.allowedIps.join(","),
        "persistent-keepalive",
        String(peer.persistentKeepalive),
      ]);
    },
    async removePeer(publicKey) {
      const key = formatKey(publicKey);
      await wg(["set", iface, "peer", key, "remove"]);
      releaseBridge(peerEndpoints.get(key));
      peerEndpoints.delete(key);
    },
    async peers() {
      const byPort = new Map<string, string>();
      for (const bridge of bridges.values())
        byPort.set(`${LOOPBACK}:${bridge.port}`, bridge.endpoint.key);
      return parseDump(await wg(["show", iface, "dump"]), byPort);
    },
    drops() {
      return { unknownEndpoint, bridgeSendErrors: sendErrors };
    },
    async close() {
      for (const bridge of bridges.values()) bridge.socket.close();
      bridges.clear();
      await removeInterface();
    },
  };
}

/** `wg show IFACE dump`: a line for the interface, then one per peer, tab-separated. */
export function parseDump(text: string, endpointNames: ReadonlyMap<string, string>): PeerStatus[] {
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
