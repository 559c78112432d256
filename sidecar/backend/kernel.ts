/**
 * The kernel backend: a WireGuard interface configured with `wg` (wg-interface.ts), made by the
 * kernel module or, on hosts without it, by a userspace implementation such as wireguard-go
 * (`--wireguard-go CMD`, or WG_QUICK_USERSPACE_IMPLEMENTATION as wg-quick reads it).
 *
 * The interface cannot speak to a WebSocket, so each tunnel endpoint gets a UDP socket on
 * 127.0.0.1 owned by the sidecar, and the peer's endpoint points there: what WireGuard sends to
 * it goes into the tunnel, and what the tunnel brings for that endpoint is sent from it to the
 * interface's listen port. On the server, each node has its own socket, so the interface tells
 * nodes apart by their loopback ports.
 */
import { createSocket, type Socket } from "node:dgram";
import { existsSync } from "node:fs";
import { formatKey } from "../../shared/siderolink/keys.ts";
import type { StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";
import { createStreamEndpoints } from "../bind/stream-endpoints.ts";
import { type ForwardFilter, installForwardFilter } from "../net/forward-filter.ts";
import { deleteLink, ip } from "../net/iproute2.ts";
import type { BackendOptions, WireGuardBackend } from "./backend.ts";
import { createWgInterface, parseDump, wg } from "./wg-interface.ts";

export interface KernelBackendOptions extends BackendOptions {
  /** A userspace implementation to run as `CMD IFACE` instead of the kernel module. */
  readonly wireguardGo?: string | undefined;
}

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

export async function createKernelBackend(
  options: KernelBackendOptions,
): Promise<WireGuardBackend> {
  const { iface } = options;
  const endpoints = createStreamEndpoints();
  let forwardFilter: ForwardFilter | undefined;
  const link = await createWgInterface({
    iface,
    privateKey: options.privateKey,
    wireguardGo: options.wireguardGo,
    // Before the interface is up, so no packet is forwarded between nodes in between.
    beforeUp: async () => {
      if (options.serverAddress) forwardFilter = await installForwardFilter(iface);
    },
  }).catch(async (error: unknown) => {
    await forwardFilter?.remove().catch(() => undefined);
    throw error;
  });
  const { listenPort } = link;
  const bridges = new Map<string, Bridge>();
  const peerEndpoints = new Map<string, string>();
  let unknownEndpoint = 0;
  let sendErrors = 0;
  const onSent = (error: Error | null): void => {
    if (error) sendErrors++;
  };

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
      await forwardFilter?.remove().catch(() => undefined);
      await link.remove();
    },
  };
}
