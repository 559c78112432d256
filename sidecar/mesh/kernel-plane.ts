/**
 * The mesh's kernel plane: a WireGuard interface that `wg` configures (the kernel module, or
 * wireguard-go with `--wireguard-go`), listening on the member's port, so direct paths run at the
 * interface's own speed with no sidecar in the data path.
 *
 * Relayed peers: each peer has a UDP "bridge" socket on 127.0.0.1 owned by the sidecar. A relayed
 * peer's endpoint is its bridge: what the interface sends there goes to the relay link for that
 * member, and what the relay brings from that member is sent from the bridge to the interface's
 * port. The interface only ever sees loopback addresses for relayed peers.
 *
 * Probing: the bridge sees the interface's handshake initiations to its peer and copies each one
 * to the peer's direct candidates from one sidecar-owned "probe" socket on the host's addresses
 * (the interface cannot send one packet to several endpoints). A handshake response from a
 * candidate arriving at the probe socket, answering one of those copies (probe-ledger.ts), proves
 * that candidate: the response goes to the interface through the peer's bridge (so the handshake
 * completes; anything else from a candidate goes the same way), and the peer is then pinned
 * to the candidate with `wg set ... endpoint`. Pinning also turns persistent keepalive off and on
 * again, which makes WireGuard send a keepalive at once: from its own port to the candidate, so
 * the other side roams to the direct path before it sends anything more through the relay. A
 * packet that still comes through the bridge (in flight during the switch) makes the interface
 * roam back to the bridge; reading the paths puts a pinned peer back on its candidate (at most
 * MAX_REPINS times per proof), until the member finds its handshake stale and falls back to the
 * relay.
 *
 * The probe socket is not the interface's port. A peer reachable at its candidate (a LAN, a
 * public address, a forwarded port, a NAT that filters by source address only) sees no
 * difference; but hole punching through a NAT that filters by remote port opens the hole for the
 * probe's port, not the interface's, so such a pair stays relayed (the userspace plane probes
 * from its one socket and has no such gap).
 *
 * A new handshake on demand: neither the kernel nor wireguard-go initiates one for a peer with a
 * live session, whatever `wg set` changes, short of the peer being removed. So a sweep removes the
 * peer and adds it again (on its bridge, with persistent keepalive, whose first keepalive finds no
 * session and starts a handshake). That drops the session, and packets the peer sends on it
 * until the new one is confirmed (about one relayed round trip), so a peer that had a handshake
 * within the sweep interval is not swept: that handshake was a sweep already, whichever side
 * began it (both sides copy initiations to candidates). Byte counters restart with the peer and
 * are carried over here.
 *
 * The interface's own UDP carries the mesh mark (its fwmark) and the probe socket's port is
 * marked by routing.ts, so neither loops into table 180.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { formatKey } from "../../shared/siderolink/keys.ts";
import { MESSAGE_INITIATION_SIZE, MessageType } from "../../shared/wireguard/constants.ts";
import { PERSISTENT_KEEPALIVE_SECONDS } from "../backend/backend.ts";
import { createWgInterface, parseDump, wg } from "../backend/wg-interface.ts";
import type { UdpEndpoint } from "../bind/endpoint.ts";
import type { Logger } from "../log.ts";
import { memberKey, RelayEndpoint } from "./dual-bind.ts";
import type { MeshPlane, MeshPlanePeer, PeerPath } from "./plane.ts";
import { ProbeLedger } from "./probe-ledger.ts";
import type { RelayLink } from "./relay-link.ts";
import { MESH_FWMARK } from "./routing.ts";

const LOOPBACK = "127.0.0.1";
/**
 * How often a proven peer that roamed back to its bridge is put on its candidate again. Packets
 * in flight during a switch need one or two; more means the peer does not see this side's
 * direct packets (a NAT that filters by the probe's port, see above): it stays relayed until the
 * next sweep proves a path again.
 */
const MAX_REPINS = 3;

export interface KernelPlaneOptions {
  readonly iface: string;
  readonly listenPort: number;
  readonly privateKey: Uint8Array;
  /** A userspace implementation to run as `CMD IFACE` instead of the kernel module. */
  readonly wireguardGo: string | undefined;
  /** A peer with a handshake this recent is not swept again (see above). */
  readonly sweepMs: number;
  readonly relay: () => RelayLink | undefined;
  readonly log: Logger;
}

interface Bridge {
  readonly member: Uint8Array;
  /** Base64 public key, as `wg` takes it. */
  readonly publicKey: string;
  readonly socket: Socket;
  /** `127.0.0.1:port`, the peer's endpoint while relayed. */
  readonly address: string;
  /** How status names the relayed path (as the userspace plane does). */
  readonly relayName: string;
  allowedIps: string;
  candidates: readonly UdpEndpoint[];
  /** The candidate a handshake response proved, while the path holds. */
  direct: string | undefined;
  repinning: boolean;
  /** Times the peer was put back on `direct` since it was proven. */
  repins: number;
  lastHandshake: number;
  /** Counters of the peer's earlier incarnations (a sweep re-adds it), and the last seen. */
  rxCarried: number;
  txCarried: number;
  rxSeen: number;
  txSeen: number;
}

export async function createKernelPlane(options: KernelPlaneOptions): Promise<MeshPlane> {
  const { iface, log } = options;
  const link = await createWgInterface({
    iface,
    privateKey: options.privateKey,
    wireguardGo: options.wireguardGo,
    listenPort: options.listenPort,
    fwmark: MESH_FWMARK,
  });
  const { listenPort } = link;
  let probe: ProbeSocket;
  try {
    probe = await openProbeSocket();
  } catch (error) {
    await link.remove();
    throw error;
  }
  const bridges = new Map<string, Bridge>();
  const byPublicKey = new Map<string, Bridge>();
  /** Candidate `host:port` to the bridge of the peer it belongs to. */
  const candidateOwners = new Map<string, Bridge>();
  const ledger = new ProbeLedger<Bridge>();
  let sendErrors = 0;
  let unknownProbeSource = 0;
  const onSent = (error: Error | null): void => {
    if (error) sendErrors++;
  };

  // `wg` changes one at a time: a sweep's remove and re-add must not interleave with another
  // change to the same peer.
  let queue: Promise<void> = Promise.resolve();
  const serially = (change: () => Promise<void>): Promise<void> => {
    const run = queue.then(change);
    queue = run.catch(() => undefined);
    return run;
  };
  const addPeer = async (bridge: Bridge): Promise<void> => {
    await wg([
      "set",
      iface,
      "peer",
      bridge.publicKey,
      "endpoint",
      bridge.address,
      "allowed-ips",
      bridge.allowedIps,
      "persistent-keepalive",
      String(PERSISTENT_KEEPALIVE_SECONDS),
    ]);
  };
  const readd = async (bridge: Bridge): Promise<void> => {
    await wg(["set", iface, "peer", bridge.publicKey, "remove"]);
    bridge.rxCarried += bridge.rxSeen;
    bridge.txCarried += bridge.txSeen;
    bridge.rxSeen = 0;
    bridge.txSeen = 0;
    bridge.lastHandshake = 0;
    await addPeer(bridge);
  };
  const pin = (bridge: Bridge, endpoint: string): Promise<void> => {
    bridge.repinning = true;
    return serially(async () => {
      if (bridge.direct !== endpoint || !bridges.has(memberKey(bridge.member))) return;
      await wg(["set", iface, "peer", bridge.publicKey, "endpoint", endpoint]);
      await wg(["set", iface, "peer", bridge.publicKey, "persistent-keepalive", "off"]);
      await wg([
        "set",
        iface,
        "peer",
        bridge.publicKey,
        "persistent-keepalive",
        String(PERSISTENT_KEEPALIVE_SECONDS),
      ]);
    }).finally(() => {
      bridge.repinning = false;
    });
  };

  probe.socket.on("message", (message, from) => {
    const source = endpointText(from);
    const answered = ledger.answered(message, Date.now());
    const proven =
      answered?.candidates.some((candidate) => candidate.key === source) === true
        ? answered
        : undefined;
    const bridge = proven ?? candidateOwners.get(source);
    if (bridge === undefined) {
      unknownProbeSource++;
      return;
    }
    // To the interface as if relayed: it authenticates what the sidecar cannot.
    bridge.socket.send(message, listenPort, LOOPBACK, onSent);
    if (proven === undefined) return;
    proven.repins = 0;
    if (proven.direct === source) return;
    proven.direct = source;
    log.info("direct path found", { publicKey: proven.publicKey, endpoint: source });
    pin(proven, source).catch((error: unknown) =>
      log.warn("direct path not set", { publicKey: proven.publicKey, error: String(error) }),
    );
  });
  probe.socket.on("error", () => sendErrors++);

  const openBridge = async (peer: MeshPlanePeer): Promise<Bridge> => {
    const socket = createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, LOOPBACK, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const bridge: Bridge = {
      member: peer.member.slice(),
      publicKey: formatKey(peer.publicKey),
      socket,
      address: `${LOOPBACK}:${socket.address().port}`,
      relayName: new RelayEndpoint(peer.member).key,
      allowedIps: "",
      candidates: [],
      direct: undefined,
      repinning: false,
      repins: 0,
      lastHandshake: 0,
      rxCarried: 0,
      txCarried: 0,
      rxSeen: 0,
      txSeen: 0,
    };
    socket.on("message", (message, from) => {
      // Only the interface may use the bridge: anything else on loopback is not WireGuard's.
      if (from.port !== listenPort) return;
      options.relay()?.send(bridge.member, message);
      if (
        message[0] === MessageType.Initiation &&
        message.length === MESSAGE_INITIATION_SIZE &&
        bridge.candidates.length > 0
      ) {
        ledger.note(bridge, message, Date.now());
        for (const candidate of bridge.candidates) {
          if (candidate.family === 6 && !probe.dualStack) continue;
          probe.socket.send(message, candidate.port, probe.address(candidate), onSent);
        }
      }
    });
    socket.on("error", () => sendErrors++);
    return bridge;
  };

  const setCandidates = (bridge: Bridge, candidates: readonly UdpEndpoint[]): void => {
    for (const candidate of bridge.candidates) {
      if (candidateOwners.get(candidate.key) === bridge) candidateOwners.delete(candidate.key);
    }
    bridge.candidates = candidates;
    for (const candidate of candidates) candidateOwners.set(candidate.key, bridge);
  };

  return {
    kind: "kernel",
    iface,
    listenPort,
    udpPorts: [listenPort, probe.port],
    async setPeer(peer) {
      const key = memberKey(peer.member);
      let bridge = bridges.get(key);
      const isNew = bridge === undefined;
      if (bridge === undefined) {
        bridge = await openBridge(peer);
        bridges.set(key, bridge);
        byPublicKey.set(bridge.publicKey, bridge);
      }
      setCandidates(bridge, peer.candidates);
      const allowedIps = peer.allowedIps.join(",");
      if (!isNew && allowedIps === bridge.allowedIps) return;
      bridge.allowedIps = allowedIps;
      const updated = bridge;
      // A new peer's persistent keepalive goes from off to on: WireGuard sends a keepalive at
      // once, finds no session and begins the handshake.
      await serially(() =>
        isNew
          ? addPeer(updated)
          : wg(["set", iface, "peer", updated.publicKey, "allowed-ips", allowedIps]).then(
              () => undefined,
            ),
      );
    },
    async removePeer(peer) {
      const key = memberKey(peer.member);
      const bridge = bridges.get(key);
      if (bridge === undefined) return;
      bridges.delete(key);
      byPublicKey.delete(bridge.publicKey);
      setCandidates(bridge, []);
      ledger.forget(bridge);
      bridge.socket.close();
      await serially(() =>
        wg(["set", iface, "peer", bridge.publicKey, "remove"]).then(() => undefined),
      );
    },
    deliverRelayed(member, datagram) {
      const bridge = bridges.get(memberKey(member));
      // A member this node has no record of: nothing to hand the datagram to.
      if (bridge === undefined) return;
      bridge.socket.send(datagram, listenPort, LOOPBACK, onSent);
    },
    async paths() {
      const out = new Map<string, PeerPath>();
      for (const peer of parseDump(await wg(["show", iface, "dump"]))) {
        const bridge = byPublicKey.get(peer.publicKey);
        if (bridge === undefined) continue;
        bridge.rxSeen = peer.rxBytes;
        bridge.txSeen = peer.txBytes;
        bridge.lastHandshake = peer.lastHandshake;
        let endpoint = peer.endpoint;
        if (endpoint === bridge.address && bridge.direct !== undefined) {
          if (bridge.repinning) {
            endpoint = bridge.direct;
          } else if (bridge.repins < MAX_REPINS) {
            bridge.repins++;
            endpoint = bridge.direct;
            pin(bridge, bridge.direct).catch((error: unknown) =>
              log.warn("direct path not set", {
                publicKey: bridge.publicKey,
                error: String(error),
              }),
            );
          } else {
            log.info("direct path given up: the peer keeps sending through the relay", {
              publicKey: bridge.publicKey,
              endpoint: bridge.direct,
            });
            bridge.direct = undefined;
          }
        }
        const relayed = endpoint === bridge.address;
        out.set(peer.publicKey, {
          publicKey: peer.publicKey,
          endpoint: relayed ? bridge.relayName : endpoint,
          path: relayed ? "relay" : "direct",
          lastHandshake: peer.lastHandshake,
          rxBytes: bridge.rxCarried + peer.rxBytes,
          txBytes: bridge.txCarried + peer.txBytes,
        });
      }
      return out;
    },
    async sweep(peer) {
      const bridge = bridges.get(memberKey(peer.member));
      if (bridge === undefined || bridge.direct !== undefined) return;
      if (bridge.lastHandshake !== 0 && Date.now() - bridge.lastHandshake < options.sweepMs) return;
      await serially(() => readd(bridge));
    },
    async fallBack(peer) {
      const bridge = bridges.get(memberKey(peer.member));
      if (bridge === undefined) return;
      bridge.direct = undefined;
      await serially(() => readd(bridge));
    },
    drops() {
      return { bridgeSendErrors: sendErrors, unknownProbeSource };
    },
    async close() {
      for (const bridge of bridges.values()) bridge.socket.close();
      bridges.clear();
      byPublicKey.clear();
      probe.socket.close();
      await queue;
      await link.remove();
    },
  };
}

interface ProbeSocket {
  readonly socket: Socket;
  readonly port: number;
  /** Whether IPv6 candidates can be reached (the socket is IPv6 with IPv4 mapped in). */
  readonly dualStack: boolean;
  /** The candidate's address as this socket sends to it. */
  address(candidate: UdpEndpoint): string;
}

/** The probe socket on every host address: dual-stack where the host has IPv6, else IPv4. */
async function openProbeSocket(): Promise<ProbeSocket> {
  const bound = async (type: "udp4" | "udp6"): Promise<Socket> => {
    const socket = createSocket({ type, ipv6Only: false });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, type === "udp6" ? "::" : "0.0.0.0", () => {
        socket.off("error", reject);
        resolve();
      });
    });
    return socket;
  };
  try {
    const socket = await bound("udp6");
    return {
      socket,
      port: socket.address().port,
      dualStack: true,
      address: (candidate) =>
        candidate.family === 4 ? `::ffff:${candidate.address}` : candidate.address,
    };
  } catch {
    const socket = await bound("udp4");
    return {
      socket,
      port: socket.address().port,
      dualStack: false,
      address: (candidate) => candidate.address,
    };
  }
}

/** A sender as UdpEndpoint keys it: IPv4 (mapped or not) as `a.b.c.d:port`, IPv6 bracketed. */
function endpointText(from: RemoteInfo): string {
  if (from.family === "IPv4") return `${from.address}:${from.port}`;
  if (from.address.startsWith("::ffff:") && from.address.includes("."))
    return `${from.address.slice(7)}:${from.port}`;
  return `[${from.address}]:${from.port}`;
}
