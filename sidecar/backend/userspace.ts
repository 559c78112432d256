/**
 * The userspace backend: the TypeScript WireGuard device on a Linux TUN, its ciphertext on a
 * stream bind (or a UDP bind when not tunnelling), and the `wg` configuration socket.
 */
import { formatKey } from "../../shared/siderolink/keys.ts";
import { Device } from "../../shared/wireguard/device.ts";
import { createStreamBind, type StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";
import { handleUapiRequest } from "../../shared/wireguard/uapi.ts";
import { createStreamEndpoints } from "../bind/stream-endpoints.ts";
import { createUdpBind } from "../bind/udp.ts";
import { ip } from "../net/iproute2.ts";
import { openLinuxTun } from "../tun/tun-linux.ts";
import { nodeClock } from "../wireguard/clock-node.ts";
import { createNodeCryptoProvider } from "../wireguard/crypto-node.ts";
import { serveUapi } from "../wireguard/uapi-socket.ts";
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
  const device = new Device({
    tun,
    bind: options.udp ? createUdpBind({ port: 0 }) : streamBind,
    crypto: createNodeCryptoProvider(),
    clock: nodeClock,
    log: options.log,
  });
  let uapi: Awaited<ReturnType<typeof serveUapi>> | undefined;
  try {
    await ip(["link", "set", "dev", tun.name, "txqueuelen", String(TunTxQueuePackets)]);
    device.setPrivateKey(options.privateKey);
    await device.start();
    uapi = await serveUapi(tun.name, (request) => handleUapiRequest(device, request));
  } catch (error) {
    await device.close();
    throw error;
  }
  const served = uapi;

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
    async close() {
      await served.close();
      await device.close();
    },
  };
}
