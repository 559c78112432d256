/**
 * The server role's link: the interface with the server address, and the uplink to the relay.
 * Peers come and go as the relay reports them; node datagrams, tagged with their virtual
 * addresses, go to WireGuard through the tunnel endpoint of their tag.
 */

import { parseIPv6 } from "../shared/net/ip.ts";
import { VIRTUAL_PEER_PORT } from "../shared/siderolink/addressing.ts";
import { uplinkPath } from "../shared/siderolink/relay-api.ts";
import { CloseCode } from "../shared/tunnel/frame.ts";
import type { StreamEndpoint } from "../shared/wireguard/stream-bind.ts";
import {
  type BackendKind,
  LINK_MTU,
  PERSISTENT_KEEPALIVE_SECONDS,
  type WireGuardBackend,
} from "./backend/backend.ts";
import { createBackend, type RoleRuntime } from "./daemon.ts";
import { ExitCode } from "./exit-codes.ts";
import type { Shutdown } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { ip, setLinkUp } from "./net/iproute2.ts";
import type { ProxySettings } from "./net/proxy.ts";
import { canonicalAddress, createNodeUuids, type NodeResolver } from "./services/nodes.ts";
import {
  type OverlayServices,
  type OverlayServicesSettings,
  startOverlayServices,
} from "./services/overlay-services.ts";
import { peerReport, type StatusSnapshot } from "./status.ts";
import type { TlsSettings } from "./tls.ts";
import { type AutoUplink, connectAutoUplink } from "./uplink/auto-uplink.ts";
import {
  connectUplink,
  type Uplink,
  type UplinkKind,
  type UplinkOptions,
} from "./uplink/client.ts";
import { PeerReconciler, type PeerTable } from "./uplink/peers.ts";

export interface ServerLinkOptions {
  readonly relayUrl: string;
  readonly network: string;
  /** Opens the uplink: the uplink secret (or, for a network that has none, the admin secret). */
  readonly uplinkSecret: string;
  /** Reads node UUIDs for the records services; absent: records carry addresses only. */
  readonly adminSecret: string | undefined;
  /** The server address with its prefix length (`prefix::1/64`). */
  readonly address: string;
  readonly iface: string;
  readonly backendKind: BackendKind;
  readonly wireguardGo: string | undefined;
  readonly serverKey: Uint8Array;
  readonly serverPublicKey: Uint8Array;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
  /** The uplink's carrier, or auto: the WebSocket, else the HTTP-only tunnel (auto-uplink.ts). */
  readonly transport: "auto" | UplinkKind;
  readonly log: Logger;
  readonly shutdown: Shutdown;
  /** The events sink and kernel log receiver for the nodes; absent: not served. */
  readonly services?: OverlayServicesSettings;
}

export function createServerLink(options: ServerLinkOptions): RoleRuntime {
  const { relayUrl, network, address, iface, log, shutdown } = options;
  const startedAt = new Date().toISOString();
  let backend: WireGuardBackend | undefined;
  let uplink: Uplink | AutoUplink | undefined;
  let reconciler: PeerReconciler | undefined;
  let services: OverlayServices | undefined;
  const { adminSecret } = options;
  const nodeUuids =
    adminSecret === undefined
      ? undefined
      : createNodeUuids({
          relayUrl,
          network,
          adminSecret,
          tls: options.tls,
          onError: (error) =>
            log.warn("cannot read node UUIDs from the relay; records carry addresses only", {
              error: error.message,
            }),
        });
  /** A provisioned node's identity by source address: only WireGuard peers qualify. */
  const resolveNode: NodeResolver = async (remoteAddress) => {
    const address = canonicalAddress(remoteAddress);
    if (address === undefined || reconciler === undefined) return undefined;
    for (const peer of reconciler.peers.values()) {
      if (peer.address === address) return { address, uuid: await nodeUuids?.uuidOf(address) };
    }
    return undefined;
  };

  async function start(): Promise<void> {
    const backendOptions = {
      iface,
      privateKey: options.serverKey,
      sink: (datagrams: readonly Uint8Array[], to: StreamEndpoint) =>
        uplink?.send(datagrams, to.addressBytes),
      serverAddress: parseIPv6(address.split("/")[0], "server address"),
      log: (message: string) => log.debug(message),
    };
    backend = await createBackend(options.backendKind, backendOptions, options.wireguardGo);
    const wg = backend;
    await ip(["address", "replace", address, "dev", iface, "nodad"]);
    await setLinkUp(iface);
    log.info("interface created", { iface, backend: wg.kind, address, mtu: LINK_MTU });

    const table: PeerTable = {
      async setPeer(peer) {
        await wg.setPeer({
          publicKey: peer.publicKeyBytes,
          allowedIps: [`${peer.address}/128`],
          endpoint: wg.endpoint(peer.tag, VIRTUAL_PEER_PORT),
          persistentKeepalive: PERSISTENT_KEEPALIVE_SECONDS,
        });
        nodeUuids?.peersChanged();
        // The virtual address names the node's tunnel stream: debug level only.
        log.info("peer added", { publicKey: peer.publicKey, address: peer.address });
        log.debug("peer tunnel", {
          publicKey: peer.publicKey,
          virtualAddress: peer.virtualAddress,
        });
      },
      async removePeer(peer) {
        await wg.removePeer(peer.publicKeyBytes);
        log.info("peer removed", { publicKey: peer.publicKey, address: peer.address });
      },
    };
    reconciler = new PeerReconciler(table);
    const batch: Uint8Array[] = [];
    const uplinkOptions: Omit<UplinkOptions, "transport"> = {
      relayUrl,
      network,
      secret: options.uplinkSecret,
      serverPublicKey: options.serverPublicKey,
      reconciler,
      tls: options.tls,
      proxy: options.proxy,
      log: log.with({ uplink: network }),
      onDatagrams(tags, datagrams) {
        // Consecutive datagrams of one node go to the device as one batch.
        let i = 0;
        while (i < datagrams.length) {
          const tag = tags[i];
          batch.length = 0;
          while (i < datagrams.length && sameTag(tags[i], tag)) batch.push(datagrams[i++]);
          wg.deliver(batch, wg.endpoint(tag, VIRTUAL_PEER_PORT));
        }
        batch.length = 0;
      },
      onFatal(reason, code) {
        const exitCode =
          code === CloseCode.Unauthorized || code === CloseCode.ServerKeyMismatch
            ? ExitCode.BadCredentials
            : ExitCode.Failure;
        log.error("the relay refused the uplink", { reason, code });
        process.stderr.write(`siderolink-sidecar serve: the relay refused the uplink: ${reason}\n`);
        shutdown.stop(`uplink refused: ${reason}`, exitCode);
      },
    };
    const { transport } = options;
    uplink =
      transport === "auto"
        ? connectAutoUplink(uplinkOptions)
        : connectUplink({ ...uplinkOptions, transport });
    if (options.services) {
      services = await startOverlayServices({
        ...options.services,
        host: address.split("/")[0],
        resolveNode,
        log: log.with({ service: "records" }),
      });
    }
  }

  async function snapshot(): Promise<StatusSnapshot> {
    const now = Date.now();
    const wg = backend!;
    const link = uplink!;
    const peers = await wg.peers();
    return {
      role: "server",
      iface,
      backend: wg.kind,
      pid: process.pid,
      startedAt,
      relay: `${relayUrl}${uplinkPath(network)}`,
      up: link.synced,
      transport: {
        kind: link.kind,
        choice: options.transport,
        reason: "reason" in link ? link.reason : null,
        state: link.state,
        lastError: link.lastError ?? null,
        connects: link.stats.connects,
        rxDatagrams: link.stats.rxDatagrams,
        txDatagrams: link.stats.txDatagrams,
        rxBytes: link.stats.rxBytes,
        txBytes: link.stats.txBytes,
      },
      addresses: { local: address, server: address.split("/")[0], virtual: null },
      peers: peers.map((peer) =>
        peerReport(peer, now, reconciler?.peers.get(peer.publicKey)?.address),
      ),
      drops: {
        ...wg.drops(),
        uplinkNotConnected: link.stats.dropsNotConnected,
        uplinkCongested: link.stats.dropsCongested,
      },
      ...(services ? { records: services.counters } : {}),
    };
  }

  async function close(): Promise<void> {
    await services?.close();
    await uplink?.close();
    await backend?.close();
  }

  return { start, snapshot, close };
}

function sameTag(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}
