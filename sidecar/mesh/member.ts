/**
 * A mesh member: its WireGuard plane (plane.ts: the userspace device, or a kernel or
 * wireguard-go interface), the relay link that publishes this member's record and pushes the
 * others', the peers made from those records, and the routing that sends their addresses
 * through the interface.
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
 * Paths: a new peer starts on its relay endpoint and is sent a handshake at once; the plane
 * copies that initiation to the peer's direct candidates (its LAN endpoints and the address the
 * relay saw it at, with its listen port), and the peer moves to the direct path that answers.
 * Every `sweepMs`, a relayed peer with candidates gets a new handshake (a new sweep of its
 * candidates); a direct peer whose handshake is older than STALE_HANDSHAKE_MS goes back to the
 * relay endpoint and is swept the same way.
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
  RecordError,
  sealRecord,
} from "../../shared/mesh/record.ts";
import { formatIP, formatPrefix, type Prefix, parseIP } from "../../shared/net/ip.ts";
import { formatKey, publicKey as publicKeyOf } from "../../shared/siderolink/keys.ts";
import { REJECT_AFTER_TIME } from "../../shared/wireguard/constants.ts";
import type { BackendKind } from "../backend/backend.ts";
import type { Logger } from "../log.ts";
import { handshakeAgeSeconds } from "../monitor.ts";
import { addAddress, setLinkUp } from "../net/iproute2.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { PeerReport, StatusSnapshot } from "../status.ts";
import type { TlsSettings } from "../tls.ts";
import { createKernelPlane } from "./kernel-plane.ts";
import type { NodeWatch } from "./kubernetes-nodes.ts";
import type { NodePeer } from "./node-annotations.ts";
import { type MergedPeer, mergePeer, type NodeFacts, type RelayFacts } from "./peer-sources.ts";
import type { MeshPlane, MeshPlanePeer } from "./plane.ts";
import { connectRelayLink, type RelayLink } from "./relay-link.ts";
import { installMeshRouting, type MeshRouting } from "./routing.ts";
import { createUserspacePlane } from "./userspace-plane.ts";

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
  readonly backend: BackendKind;
  /** Kernel backend: a userspace implementation to run as `CMD IFACE` instead of the module. */
  readonly wireguardGo: string | undefined;
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
  merged: MergedPeer;
  plane: MeshPlanePeer;
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
    const planeOptions = {
      iface: options.iface,
      listenPort: options.listenPort,
      privateKey: options.privateKey,
      relay: () => link,
      log,
    };
    const plane: MeshPlane =
      options.backend === "kernel"
        ? await createKernelPlane({
            ...planeOptions,
            wireguardGo: options.wireguardGo,
            sweepMs: options.sweepMs,
          })
        : await createUserspacePlane(planeOptions);
    cleanups.push(() => plane.close());
    await addAddress(plane.iface, `${formatIP(ownAddress)}/128`);
    await setLinkUp(plane.iface);
    const routing: MeshRouting = await installMeshRouting({
      iface: plane.iface,
      udpPorts: plane.udpPorts,
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
        plane
          .removePeer(existing.plane)
          .catch((error: unknown) =>
            log.warn("mesh peer not removed from the interface", { error: String(error) }),
          );
        log.info("mesh peer removed", { publicKey: formatKey(existing.merged.publicKey) });
        syncRoutes();
        return;
      }
      const planePeer: MeshPlanePeer = {
        member: member.slice(),
        publicKey: merged.publicKey,
        allowedIps: allowedIps(merged),
        candidates: merged.candidates,
      };
      peers.set(key, { merged, plane: planePeer, lastSweep: existing?.lastSweep ?? Date.now() });
      plane.setPeer(planePeer).catch((error: unknown) =>
        log.error("mesh peer not configured", {
          publicKey: formatKey(merged.publicKey),
          error: String(error),
        }),
      );
      if (!existing) {
        log.info("mesh peer added", {
          publicKey: formatKey(merged.publicKey),
          address: formatIP(merged.meshAddress),
          sources: merged.sources.join(" "),
          candidates: merged.candidates.map(String).join(" "),
        });
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
          listenPort: plane.listenPort,
          expiresAt: Math.floor((Date.now() + RECORD_TTL_MS) / 1000),
          routedPrefixes: options.podCidrs,
          endpoints: localEndpoints(plane.iface, plane.listenPort),
        }),
      onRecord,
      onRemoved: (member) => {
        relayFacts.delete(formatId(member));
        refresh(member);
      },
      onSynced: () => log.info("mesh records synced", { peers: peers.size }),
      onDatagram: (member, datagram) => plane.deliverRelayed(member, datagram),
    });
    const relayLink = link;
    cleanups.push(() => relayLink.close());

    if (options.kubernetes !== undefined) {
      const { kubernetes } = options;
      const { watchKubernetesNodes } = await import("./kubernetes-nodes.ts");
      const nodes: NodeWatch = watchKubernetesNodes(kubernetes.config, {
        prefix: options.prefix,
        nodeName: kubernetes.nodeName,
        ...(kubernetes.publish
          ? {
              publish: () => ({
                publicKey: ownKey,
                meshAddress: ownAddress,
                routedPrefixes: options.podCidrs,
                endpoints: localEndpoints(plane.iface, plane.listenPort),
              }),
            }
          : {}),
        onPeer: onNodePeer,
        log,
        ...(kubernetes.resyncMs === undefined ? {} : { resyncMs: kubernetes.resyncMs }),
      });
      cleanups.push(() => nodes.close());
    }

    const checkPaths = async (): Promise<void> => {
      const now = Date.now();
      for (const [key, facts] of relayFacts) {
        if (facts.record.expiresAt * 1000 > now) continue;
        relayFacts.delete(key);
        refresh(memberIdOf(facts.record.publicKey));
      }
      const paths = await plane.paths();
      for (const peer of peers.values()) {
        const path = paths.get(formatKey(peer.merged.publicKey));
        if (path === undefined) continue;
        if (path.path === "relay") {
          if (peer.plane.candidates.length > 0 && now - peer.lastSweep >= options.sweepMs) {
            peer.lastSweep = now;
            await plane.sweep(peer.plane);
          }
        } else if (path.lastHandshake !== 0 && now - path.lastHandshake > STALE_HANDSHAKE_MS) {
          log.info("direct path stopped; relaying and sweeping", {
            publicKey: formatKey(peer.merged.publicKey),
          });
          peer.lastSweep = now;
          await plane.fallBack(peer.plane);
        }
      }
    };
    // One check at a time: the kernel plane's take a few `wg` commands.
    let checking = false;
    const check = setInterval(() => {
      if (checking) return;
      checking = true;
      checkPaths()
        .catch((error: unknown) => log.warn("mesh paths not checked", { error: String(error) }))
        .finally(() => {
          checking = false;
        });
    }, CHECK_INTERVAL_MS);
    cleanups.push(async () => clearInterval(check));

    const snapshot = async (): Promise<StatusSnapshot> => {
      const now = Date.now();
      const paths = await plane.paths();
      const reports: PeerReport[] = [];
      for (const peer of peers.values()) {
        const path = paths.get(formatKey(peer.merged.publicKey));
        const lastHandshake = path?.lastHandshake ?? 0;
        reports.push({
          publicKey: formatKey(peer.merged.publicKey),
          endpoint: path?.endpoint ?? null,
          meshAddress: formatIP(peer.merged.meshAddress),
          routedPrefixes: peer.merged.routedPrefixes.map(formatPrefix),
          sources: peer.merged.sources,
          path: path?.path ?? "relay",
          lastHandshake: lastHandshake !== 0 ? new Date(lastHandshake).toISOString() : null,
          lastHandshakeAgeSeconds: path ? handshakeAgeSeconds(now, lastHandshake) : null,
          rxBytes: path?.rxBytes ?? 0,
          txBytes: path?.txBytes ?? 0,
        });
      }
      return {
        role: "mesh",
        iface: plane.iface,
        backend: plane.kind,
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
          ...plane.drops(),
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
function localEndpoints(iface: string, port: number): { address: Uint8Array; port: number }[] {
  const out: { address: Uint8Array; port: number }[] = [];
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
