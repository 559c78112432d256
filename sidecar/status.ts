/**
 * What a running sidecar reports about itself, and how `siderolink-sidecar status` gets it: a
 * Unix socket per interface (`<run dir>/<iface>.sock`, default run dir /run/siderolink-sidecar)
 * that answers each connection with one JSON snapshot and closes.
 */
import { connect } from "node:net";
import { join } from "node:path";
import type { PeerStatus } from "./backend/backend.ts";
import type { GatewayReport } from "./gateway/gateway.ts";
import { handshakeAgeSeconds } from "./monitor.ts";
import { serveUnixSocket, type UnixSocketServer } from "./net/unix-socket.ts";

export const DEFAULT_RUN_DIRECTORY = "/run/siderolink-sidecar";

export interface PeerReport {
  readonly publicKey: string;
  readonly endpoint: string | null;
  /** The node's overlay address (server role). */
  readonly address?: string;
  /** Mesh role: the peer's mesh address, routed prefixes, and how its datagrams travel. */
  readonly meshAddress?: string;
  readonly routedPrefixes?: readonly string[];
  readonly path?: "direct" | "relay";
  /** Mesh role: where the peer was learnt, "relay" and/or "kubernetes". */
  readonly sources?: readonly string[];
  /** ISO time of the last handshake, or null. */
  readonly lastHandshake: string | null;
  readonly lastHandshakeAgeSeconds: number | null;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface StatusSnapshot {
  readonly role: "node" | "server" | "gateway" | "mesh";
  readonly iface: string;
  readonly backend: string;
  readonly pid: number;
  readonly startedAt: string;
  /** The relay or API URL, without query or credentials. */
  readonly relay: string;
  /**
   * Node: the transport is connected and the handshake is fresh. Server: the uplink is synced.
   * Gateway: serving, and every machine's relay tunnel is connected.
   */
  readonly up: boolean;
  readonly transport: {
    /** In use now: websocket, grpc, http (the HTTP-only tunnel), udp, or none. */
    readonly kind: string;
    /** What `--transport` asked for (auto, or one kind). */
    readonly choice: string;
    /** Under auto: which transport is in use and why; null otherwise. */
    readonly reason: string | null;
    readonly state: string;
    readonly lastError: string | null;
    readonly connects: number;
    readonly rxDatagrams: number;
    readonly txDatagrams: number;
    readonly rxBytes: number;
    readonly txBytes: number;
  };
  readonly addresses: {
    /** This end's overlay address with its prefix length. */
    readonly local: string | null;
    readonly server: string | null;
    /** Node: its virtual tunnel endpoint. */
    readonly virtual: string | null;
  };
  readonly peers: readonly PeerReport[];
  readonly drops: Readonly<Record<string, number>>;
  /**
   * Server role with records on: per service ("events", "logs"), records by outcome
   * (recorded, refused, malformed, oversized, unwritten).
   */
  readonly records?: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** Gateway role: its machines, each with its relay tunnel and counters. */
  readonly gateway?: GatewayReport;
}

/** A backend peer as the snapshot reports it at `now`; `address` is the node's (server role). */
export function peerReport(peer: PeerStatus, now: number, address?: string): PeerReport {
  return {
    publicKey: peer.publicKey,
    endpoint: peer.endpoint,
    ...(address === undefined ? {} : { address }),
    lastHandshake: peer.lastHandshake === 0 ? null : new Date(peer.lastHandshake).toISOString(),
    lastHandshakeAgeSeconds: handshakeAgeSeconds(now, peer.lastHandshake),
    rxBytes: peer.rxBytes,
    txBytes: peer.txBytes,
  };
}

export function statusSocketPath(runDirectory: string, iface: string): string {
  return join(runDirectory, `${iface}.sock`);
}

export type StatusServer = UnixSocketServer;

/** Serves snapshots on the interface's status socket (replacing a stale socket file). */
export function serveStatus(
  path: string,
  snapshot: () => Promise<StatusSnapshot>,
): Promise<StatusServer> {
  return serveUnixSocket({
    path,
    directoryMode: 0o755,
    onConnection(socket) {
      socket.on("error", () => socket.destroy());
      snapshot().then(
        (value) => socket.end(`${JSON.stringify(value)}\n`),
        (error: unknown) => socket.end(`${JSON.stringify({ error: String(error) })}\n`),
      );
    },
  });
}

/** Reads one snapshot; rejects with a message naming the socket when nothing answers. */
export function readStatus(path: string, timeoutMs = 5000): Promise<StatusSnapshot> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new Error(
          error.code === "ENOENT" || error.code === "ECONNREFUSED"
            ? `no sidecar is running for this interface (${path} ${error.code === "ENOENT" ? "does not exist" : "refuses connections"})`
            : `${path}: ${error.message}`,
        ),
      );
    });
    socket.on("end", () => {
      clearTimeout(timer);
      try {
        const value = JSON.parse(text) as StatusSnapshot | { error: string };
        if ("error" in value) reject(new Error(`the sidecar could not report: ${value.error}`));
        else resolve(value);
      } catch {
        reject(new Error(`${path} answered something that is not a status report`));
      }
    });
  });
}
