/**
 * The userspace backend: the TypeScript WireGuard device on a Linux TUN, its ciphertext on a
 * stream bind (or a UDP bind when not tunnelling), and the `wg` configuration socket.
 */
import { formatKey } from "../../shared/siderolink/keys.ts";
import { createStreamBind, type StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";
import { createStreamEndpoints } from "../bind/stream-endpoints.ts";
import { createUdpBind } from "../bind/udp.ts";
import { ip } from "../net/iproute2.ts";
import { openLinuxTun } from "../tun/tun-linux.ts";
import { startUserspaceDevice } from "../wireguard/userspace-device.ts";
import { type BackendOptions, LINK_MTU, type WireGuardBackend } from "./backend.ts";
import { filterTunSource } from "./source-filter.ts";

/**
 * Packets the kernel queues for the device to read (the TUN's txqueuelen; 500 by default).
 * Behind a full queue of 500 packets at 1280 bytes every new packet, a ping included, waits
 * about 10 ms at a few hundred Mbit/s; with a short one the tunnelled TCP meets loss sooner
 * and backs off instead of building delay (docs/benchmarks.md, S4).
 */
export const TunTxQueuePackets = 128;

export async function createUserspaceBackend(options: BackendOptions): Promise<WireGuardBackend> {
  const streamBind = createStreamBind();
  streamBind.attach(options.sink);
  const endpoints = createStreamEndpoints();
  const linuxTun = openLinuxTun({ name: options.iface, mtu: LINK_MTU });
  const filtered = options.serverAddress
    ? filterTunSource(linuxTun, options.serverAddress)
    : undefined;
  const tun = filtered ?? linuxTun;
  try {
    await ip(["link", "set", "dev", tun.name, "txqueuelen", String(TunTxQueuePackets)]);
  } catch (error) {
    await tun.close();
    throw error;
  }
  const started = await startUserspaceDevice({
    tun,
    bind: options.udp ? createUdpBind({ port: 0 }) : streamBind,
    privateKey: options.privateKey,
    log: options.log,
  });
  const { device } = started;

  return {
    kind: "userspace",
    iface: tun.name,
    endpoint: (tag, port) => endpoints.get(tag, port),
    deliver(datagrams, from: StreamEndpoint) {
      streamBind.deliver(datagrams, from);
    },
    async setPeer(peer) {
      device.setPeer({
        publicKey: peer.publicKey,
        endpoint: peer.endpoint,
        allowedIps: peer.allowedIps,
        replaceAllowedIps: true,
        persistentKeepaliveInterval: peer.persistentKeepalive,
      });
    },
    async removePeer(publicKey) {
      device.removePeer(publicKey);
    },
    async peers() {
      return [...device.peers()].map((peer) => ({
        publicKey: formatKey(peer.publicKey),
        endpoint: peer.endpoint?.toString() ?? null,
        lastHandshake: peer.lastHandshake,
        rxBytes: peer.rxBytes,
        txBytes: peer.txBytes,
      }));
    },
    drops() {
      return {
        ...device.drops,
        tunWrite: linuxTun.writeDrops,
        streamBind: streamBind.drops,
        ...(filtered ? { notFromServer: filtered.notFromServer } : {}),
      };
    },
    close: () => started.close(),
  };
}
