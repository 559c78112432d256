/**
 * A mesh member: the userspace WireGuard device on its TUN with the dual bind (dual-bind.ts),
 * the relay link that publishes this member's record and pushes the others', the peers made
 * from those records, and the routing that sends their addresses through the interface.
 *
 * Records are trusted only when they open with the cluster key, are unexpired by their own
 * clock, and carry the mesh address their key derives to (a member cannot claim another's
 * address). A peer's allowed IPs are its mesh address and routed prefixes.
 *
 * With a kubeconfig, the cluster's Nodes are a second source (kubernetes-nodes.ts): a Node's
 * annotations describe a peer just as a record does, the same key from both is one peer, and
 * peer-sources.ts says which source wins for which field. Either source alone keeps a peer:
 * with the relay unreachable, peers from Kubernetes are still configured and swept directly.
 *
 * Paths: a new peer starts on its relay endpoint and is sent a handshake at once; the dual bind
 * copies that initiation to the peer's direct candidates (its LAN endpoints and the address the
 * relay saw it at, with its listen port), and WireGuard roaming moves the peer to whichever
 * path answered first. Every `sweepMs`, a relayed peer with candidates gets a new handshake (a
 * new sweep of its candidates); a direct peer whose handshake is older than STALE_HANDSHAKE_MS
 * goes back to the relay endpoint and is swept the same way.
 */
import { networkInterfaces } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { equalBytes } from "../../shared/bytes.ts";
import { meshAddress } from "../../shared/mesh/address.ts";
import { clusterSecrets, formatId, memberIdOf } from "../../shared/mesh/cluster.ts";
import { RECORD_TTL_MS } from "../../shared/mesh/frame.ts";
import {
  type AffiliateRecord,
  MAX_ENDPOINTS,
  openRecord,
  type RecordEndpoint,
  RecordError,
  sealRecord,
} from "../../shared/mesh/record.ts";
import { formatIP, formatPrefix, type Prefix, parseIP } from "../../shared/net/ip.ts";
import { formatKey, publicKey as publicKeyOf } from "../../shared/siderolink/keys.ts";
import { REJECT_AFTER_TIME } from "../../shared/wireguard/constants.ts";
import { Device } from "../../shared/wireguard/device.ts";
import { sendHandshakeInitiation } from "../../shared/wireguard/send.ts";
import { handleUapiRequest } from "../../shared/wireguard/uapi.ts";
import { LINK_MTU, PERSISTENT_KEEPALIVE_SECONDS } from "../backend/backend.ts";
import { UdpEndpoint } from "../bind/endpoint.ts";
import { createUdpBind } from "../bind/udp.ts";
import type { Logger } from "../log.ts";
import { handshakeAgeSeconds } from "../monitor.ts";
import { addAddress, setLinkUp } from "../net/iproute2.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { PeerReport, StatusSnapshot } from "../status.ts";
import type { TlsSettings } from "../tls.ts";
import { openLinuxTun } from "../tun/tun-linux.ts";
import { nodeClock } from "../wireguard/clock-node.ts";
import { createNodeCryptoProvider } from "../wireguard/crypto-node.ts";
import { serveUapi } from "../wireguard/uapi-socket.ts";
import { createDualBind, RelayEndpoint } from "./dual-bind.ts";
import { type NodeWatch, watchKubernetesNodes } from "./kubernetes-nodes.ts";
import type { NodePeer } from "./node-annotations.ts";
import { type MergedPeer, mergePeer, type NodeFacts, type RelayFacts } from "./peer-sources.ts";
import { connectRelayLink, type RelayLink } from "./relay-link.ts";
import { installMeshRouting, type MeshRouting } from "./routing.ts";

/** How soon a route update that failed is tried again. */
const ROUTES_RETRY_MS = 1_000;

/** A direct path whose handshake is this old has stopped: WireGuard gives up on a key then. */
export const STALE_HANDSHAKE_MS = REJECT_AFTER_TIME;
export const DEFAULT_SWEEP_MS = 30_000;
/** How often peers' paths and records' expiry are checked. */
const CHECK_INTERVAL_MS = 1_000;

export interface MeshMemberOptions {
  readonly iface: string;
  readonly relay: string;
  readonly clusterToken: string;
  readonly prefix: Prefix;
  readonly listenPort: number;
  readonly podCidrs: readonly Prefix[];
  readonly privateKey: Uint8Array;
  readonly relayAddresses: readonly string[];
  readonly relayPort: number;
  readonly sweepMs: number;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
  readonly log: Logger;
  /** The second discovery source: the cluster's Nodes, read with this kubeconfig. */
  readonly kubernetes?: {
    readonly config: KubeConfig;
    /** This host's Node: not a peer; its annotations are written when `publish` is set. */
    readonly nodeName: string;
    readonly publish: boolean;
    readonly resyncMs?: number;
  };
}

interface MeshPeer {
  readonly member: Uint8Array;
  readonly merged: MergedPeer;
  lastSweep: number;
}

export interface MeshMember {
  readonly address: string;
  snapshot(): Promise<StatusSnapshot>;
  close(): Promise<void>;
}

export async function startMeshMember(options: MeshMemberOptions): Promise<MeshMember> {
  const { log } = options;
  const startedAt = new Date().toISOString();
  const secrets = clusterSecrets(options.clusterToken);
  const ownKey = publicKeyOf(options.privateKey);
  const ownId = memberIdOf(ownKey);
  const ownAddress = meshAddress(options.prefix, ownKey);
  const peers = new Map<string, MeshPeer>();
  let recordsRejected = 0;
  let link: RelayLink | undefined;
  const cleanups: (() => Promise<void>)[] = [];
  const close = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup().catch((error: unknown) =>
        log.warn("cleanup failed", { error: String(error) }),
      );
    }
  };

  try {
    const tun = openLinuxTun({ name: options.iface, mtu: LINK_MTU });
    const udp = createUdpBind({ port: options.listenPort });
    const bind = createDualBind(udp, () => link);
    const device = new Device({
      tun,
      bind,
      crypto: createNodeCryptoProvider(),
      clock: nodeClock,
      log: (message) => log.debug(message),
    });
    cleanups.push(() => device.close());
    device.setPrivateKey(options.privateKey);
    await device.start();
    const uapi = await serveUapi(tun.name, (request) => handleUapiRequest(device, request));
    cleanups.push(() => uapi.close());
    await addAddress(tun.name, `${formatIP(ownAddress)}/128`);
    await setLinkUp(tun.name);
    const routing: MeshRouting = await installMeshRouting({
      iface: tun.name,
      listenPort: udp.port,
      relayAddresses: options.relayAddresses,
      relayPort: options.relayPort,
    });
    cleanups.push(() => routing.close());

    const allowedIps = (peer: MergedPeer): string[] => [
      `${formatIP(peer.meshAddress)}/128`,
      ...peer.routedPrefixes.map(formatPrefix),
    ];
    // One route update at a time, each to the newest wanted set: two updates running at once
    // interleave their `ip route` commands, and a removal that finishes last undoes an addition
    // (a peer's route missing until its next record change). A failed update is tried again.
    let routesWanted: string[] | undefined;
    let routesUpdating = false;
    let routesRetry: ReturnType<typeof setTimeout> | undefined;
    const syncRoutes = (): void => {
      routesWanted = [...peers.values()].flatMap((peer) => allowedIps(peer.merged));
      if (routesUpdating) return;
      routesUpdating = true;
      void (async () => {
        while (routesWanted !== undefined) {
          const wanted = routesWanted;
          routesWanted = undefined;
          try {
            await routing.setRoutes(wanted);
          } catch (error) {
            log.error("routes not updated; trying again", { error: String(error) });
            clearTimeout(routesRetry);
            routesRetry = setTimeout(syncRoutes, ROUTES_RETRY_MS);
            routesRetry.unref();
          }
        }
        routesUpdating = false;
      })();
    };
    cleanups.push(async () => clearTimeout(routesRetry));

    /** What each source says, by member id (hex): relay records, and each Node's peer. */
    const relayFacts = new Map<string, RelayFacts>();
    const nodeFacts = new Map<string, NodeFacts & { readonly member: Uint8Array }>();
    /** The Node describing `key`: the first by name when several claim one key. */
    const nodeFactsOf = (key: string): NodeFacts | undefined => {
      let found: NodeFacts | undefined;
      for (const facts of nodeFacts.values()) {
        if (formatId(facts.member) === key && (found === undefined || facts.node < found.node)) {
          found = facts;
        }
      }
      return found;
    };

    /** Configures `member` from what its sources say now; removes it when neither says anything. */
    const refresh = (member: Uint8Array): void => {
      const key = formatId(member);
      const merged = mergePeer(relayFacts.get(key), nodeFactsOf(key));
      const existing = peers.get(key);
      if (merged === undefined) {
        if (!existing) return;
        peers.delete(key);
        device.removePeer(existing.merged.publicKey);
        bind.forget(existing.member);
        log.info("mesh peer removed", { publicKey: formatKey(existing.merged.publicKey) });
        syncRoutes();
        return;
      }
      bind.setCandidates(member, merged.candidates);
      const peer = device.setPeer({
        publicKey: merged.publicKey,
        allowedIps: allowedIps(merged),
        replaceAllowedIps: true,
        persistentKeepaliveInterval: PERSISTENT_KEEPALIVE_SECONDS,
        ...(existing ? {} : { endpoint: bind.relayEndpoint(member) }),
      });
      peers.set(key, { member: member.slice(), merged, lastSweep: Date.now() });
      if (!existing) {
        log.info("mesh peer added", {
          publicKey: formatKey(merged.publicKey),
          address: formatIP(merged.meshAddress),
          sources: merged.sources.join(" "),
          candidates: merged.candidates.map(String).join(" "),
        });
        if (peer) sendHandshakeInitiation(peer, false);
      }
      syncRoutes();
    };

    const onRecord = (member: Uint8Array, observed: Uint8Array, sealed: Uint8Array): void => {
      let record: AffiliateRecord;
      try {
        record = openRecord(secrets.recordKey, member, sealed);
      } catch (error) {
        if (!(error instanceof RecordError)) throw error;
        recordsRejected++;
        log.debug("record refused", { member: formatId(member), error: error.message });
        return;
      }
      if (equalBytes(record.publicKey, ownKey)) return;
      if (!equalBytes(record.meshAddress, meshAddress(options.prefix, record.publicKey))) {
        recordsRejected++;
        log.warn("record's mesh address is not its key's address in this prefix; ignored", {
          publicKey: formatKey(record.publicKey),
          address: formatIP(record.meshAddress),
        });
        return;
      }
      if (record.expiresAt * 1000 <= Date.now()) return;
      relayFacts.set(formatId(member), { record, observed: observed.slice() });
      refresh(member);
    };

    const onNodePeer = (node: string, peer: NodePeer | undefined): void => {
      const before = nodeFacts.get(node);
      nodeFacts.delete(node);
      if (peer !== undefined && !equalBytes(peer.publicKey, ownKey)) {
        const member = memberIdOf(peer.publicKey);
        nodeFacts.set(node, { node, peer, member });
        refresh(member);
        if (before !== undefined && equalBytes(before.member, member)) return;
      }
      if (before !== undefined) refresh(before.member);
    };

    link = connectRelayLink({
      relay: options.relay,
      clusterId: secrets.clusterId,
      memberId: ownId,
      tls: options.tls,
      proxy: options.proxy,
      log,
      record: () =>
        sealRecord(secrets.recordKey, {
          publicKey: ownKey,
          meshAddress: ownAddress,
          listenPort: udp.port,
          expiresAt: Math.floor((Date.now() + RECORD_TTL_MS) / 1000),
          routedPrefixes: options.podCidrs,
          endpoints: localEndpoints(options.iface, udp.port),
        }),
      onRecord,
      onRemoved: (member) => {
        relayFacts.delete(formatId(member));
        refresh(member);
      },
      onSynced: () => log.info("mesh records synced", { peers: peers.size }),
      onDatagram: (member, datagram) => bind.deliverRelayed(member, datagram),
    });
    const relayLink = link;
    cleanups.push(() => relayLink.close());

    if (options.kubernetes !== undefined) {
      const { kubernetes } = options;
      const nodes: NodeWatch = watchKubernetesNodes(kubernetes.config, {
        prefix: options.prefix,
        nodeName: kubernetes.nodeName,
        ...(kubernetes.publish
          ? {
              publish: () => ({
                publicKey: ownKey,
                meshAddress: ownAddress,
                routedPrefixes: options.podCidrs,
                endpoints: localEndpoints(options.iface, udp.port),
              }),
            }
          : {}),
        onPeer: onNodePeer,
        log,
        ...(kubernetes.resyncMs === undefined ? {} : { resyncMs: kubernetes.resyncMs }),
      });
      cleanups.push(() => nodes.close());
    }

    const check = setInterval(() => {
      const now = Date.now();
      for (const [key, facts] of relayFacts) {
        if (facts.record.expiresAt * 1000 > now) continue;
        relayFacts.delete(key);
        refresh(memberIdOf(facts.record.publicKey));
      }
      for (const peer of peers.values()) {
        const wg = device.peer(peer.merged.publicKey);
        if (!wg) continue;
        if (wg.endpoint instanceof RelayEndpoint) {
          if (peer.merged.candidates.length > 0 && now - peer.lastSweep >= options.sweepMs) {
            peer.lastSweep = now;
            sendHandshakeInitiation(wg, false);
          }
        } else if (wg.lastHandshake !== 0 && now - wg.lastHandshake > STALE_HANDSHAKE_MS) {
          log.info("direct path stopped; relaying and sweeping", {
            publicKey: formatKey(peer.merged.publicKey),
          });
          wg.setEndpoint(bind.relayEndpoint(peer.member));
          peer.lastSweep = now;
          sendHandshakeInitiation(wg, false);
        }
      }
    }, CHECK_INTERVAL_MS);
    cleanups.push(async () => clearInterval(check));

    const snapshot = async (): Promise<StatusSnapshot> => {
      const now = Date.now();
      const reports: PeerReport[] = [];
      for (const peer of peers.values()) {
        const wg = device.peer(peer.merged.publicKey);
        const endpoint = wg?.endpoint ?? null;
        reports.push({
          publicKey: formatKey(peer.merged.publicKey),
          endpoint: endpoint?.toString() ?? null,
          meshAddress: formatIP(peer.merged.meshAddress),
          routedPrefixes: peer.merged.routedPrefixes.map(formatPrefix),
          sources: peer.merged.sources,
          path: endpoint instanceof UdpEndpoint ? "direct" : "relay",
          lastHandshake:
            wg && wg.lastHandshake !== 0 ? new Date(wg.lastHandshake).toISOString() : null,
          lastHandshakeAgeSeconds: wg ? handshakeAgeSeconds(now, wg.lastHandshake) : null,
          rxBytes: wg?.rxBytes ?? 0,
          txBytes: wg?.txBytes ?? 0,
        });
      }
      return {
        role: "mesh",
        iface: tun.name,
        backend: "userspace",
        pid: process.pid,
        startedAt,
        relay: options.relay,
        up: relayLink.state === "connected",
        transport: {
          kind: "websocket",
          choice: "websocket",
          reason: null,
          state: relayLink.state,
          lastError: relayLink.lastError ?? null,
          connects: relayLink.stats.connects,
          rxDatagrams: relayLink.stats.rxDatagrams,
          txDatagrams: relayLink.stats.txDatagrams,
          rxBytes: relayLink.stats.rxBytes,
          txBytes: relayLink.stats.txBytes,
        },
        addresses: { local: `${formatIP(ownAddress)}/128`, server: null, virtual: null },
        peers: reports,
        drops: {
          ...device.drops,
          udpSend: udp.sendDrops,
          relayLink: relayLink.drops,
          recordsRejected,
        },
      };
    };
    return { address: formatIP(ownAddress), snapshot, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** This host's addresses other peers might reach it at, with the WireGuard port. */
function localEndpoints(iface: string, port: number): RecordEndpoint[] {
  const out: RecordEndpoint[] = [];
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (name === iface) continue;
    for (const address of addresses ?? []) {
      if (address.internal || address.address.startsWith("fe80:")) continue;
      const bytes = parseIP(address.address);
      if (bytes !== undefined && out.length < MAX_ENDPOINTS) out.push({ address: bytes, port });
    }
  }
  return out;
}
