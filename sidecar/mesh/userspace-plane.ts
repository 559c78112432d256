/**
 * The mesh's userspace plane: the TypeScript WireGuard device on a TUN, its datagrams on the
 * dual bind (dual-bind.ts: one UDP socket for direct paths, the relay link for the rest), and
 * the `wg` configuration socket. Paths switch by WireGuard's own roaming: a peer's endpoint
 * becomes wherever its last authenticated packet came from.
 */
import { formatKey } from "../../shared/siderolink/keys.ts";
import { sendHandshakeInitiation } from "../../shared/wireguard/send.ts";
import { LINK_MTU, PERSISTENT_KEEPALIVE_SECONDS } from "../backend/backend.ts";
import { UdpEndpoint } from "../bind/endpoint.ts";
import { createUdpBind } from "../bind/udp.ts";
import type { Logger } from "../log.ts";
import { openLinuxTun } from "../tun/tun-linux.ts";
import { startUserspaceDevice } from "../wireguard/userspace-device.ts";
import { createDualBind } from "./dual-bind.ts";
import type { MeshPlane, PeerPath } from "./plane.ts";
import type { RelayLink } from "./relay-link.ts";

export interface UserspacePlaneOptions {
  readonly iface: string;
  readonly listenPort: number;
  readonly privateKey: Uint8Array;
  readonly relay: () => RelayLink | undefined;
  readonly log: Logger;
}

export async function createUserspacePlane(options: UserspacePlaneOptions): Promise<MeshPlane> {
  const tun = openLinuxTun({ name: options.iface, mtu: LINK_MTU });
  const udp = createUdpBind({ port: options.listenPort });
  const bind = createDualBind(udp, options.relay);
  const started = await startUserspaceDevice({
    tun,
    bind,
    privateKey: options.privateKey,
    log: (message) => options.log.debug(message),
  });
  const { device } = started;

  return {
    kind: "userspace",
    iface: tun.name,
    get listenPort() {
      return udp.port;
    },
    get udpPorts() {
      return [udp.port];
    },
    async setPeer(peer) {
      bind.setCandidates(peer.member, peer.candidates);
      const isNew = device.peer(peer.publicKey) === undefined;
      const wg = device.setPeer({
        publicKey: peer.publicKey,
        allowedIps: peer.allowedIps,
        replaceAllowedIps: true,
        persistentKeepaliveInterval: PERSISTENT_KEEPALIVE_SECONDS,
        ...(isNew ? { endpoint: bind.relayEndpoint(peer.member) } : {}),
      });
      if (isNew && wg) sendHandshakeInitiation(wg, false);
    },
    async removePeer(peer) {
      device.removePeer(peer.publicKey);
      bind.forget(peer.member);
    },
    deliverRelayed(member, datagram) {
      bind.deliverRelayed(member, datagram);
    },
    async paths() {
      const out = new Map<string, PeerPath>();
      for (const wg of device.peers()) {
        const key = formatKey(wg.publicKey);
        out.set(key, {
          publicKey: key,
          endpoint: wg.endpoint?.toString() ?? null,
          path: wg.endpoint instanceof UdpEndpoint ? "direct" : "relay",
          lastHandshake: wg.lastHandshake,
          rxBytes: wg.rxBytes,
          txBytes: wg.txBytes,
        });
      }
      return out;
    },
    async sweep(peer) {
      const wg = device.peer(peer.publicKey);
      if (wg) sendHandshakeInitiation(wg, false);
    },
    async fallBack(peer) {
      const wg = device.peer(peer.publicKey);
      if (!wg) return;
      wg.setEndpoint(bind.relayEndpoint(peer.member));
      sendHandshakeInitiation(wg, false);
    },
    drops() {
      return { ...device.drops, udpSend: udp.sendDrops };
    },
    close: () => started.close(),
  };
}
