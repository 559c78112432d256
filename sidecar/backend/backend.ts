/**
 * Where WireGuard runs for a role. Both backends create the interface (`--iface`, MTU 1280),
 * hold the private key and the peers, and exchange ciphertext with the tunnel through
 * StreamEndpoints: the sidecar's transport calls `deliver` with what the relay sent, and the
 * backend's `sink` gets what WireGuard sends.
 *
 * - userspace: the TypeScript device on a TUN (shared/wireguard), with the `wg` configuration
 *   socket served so `wg show` works as for wireguard-go.
 * - kernel: an interface that `wg` configures (the kernel module, or wireguard-go where there is
 *   none); each tunnel endpoint is a loopback UDP socket owned by the sidecar that bridges
 *   datagrams between the interface and the tunnel.
 */
import type { StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";

export type BackendKind = "userspace" | "kernel";

/** Talos's settings for SideroLink's WireGuard link. */
export const LINK_MTU = 1280;
export const PERSISTENT_KEEPALIVE_SECONDS = 25;

export interface BackendPeer {
  readonly publicKey: Uint8Array;
  /** CIDRs, replacing the peer's previous ones. */
  readonly allowedIps: readonly string[];
  /** A tunnel endpoint, or a UDP `host:port` when the server is reached directly. */
  readonly endpoint: StreamEndpoint | string;
  readonly persistentKeepalive: number;
}

export interface PeerStatus {
  /** Base64. */
  readonly publicKey: string;
  /** The endpoint as the sidecar names it (tunnel endpoints, not the loopback bridge). */
  readonly endpoint: string | null;
  /** Wall-clock ms of the last handshake; 0 when none yet. */
  readonly lastHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface WireGuardBackend {
  readonly kind: BackendKind;
  readonly iface: string;
  /** The tunnel endpoint for a virtual address tag and port (shared per tag). */
  endpoint(tag: Uint8Array, port: number): StreamEndpoint;
  /** Datagrams from the tunnel (views valid only during the call). */
  deliver(datagrams: readonly Uint8Array[], from: StreamEndpoint): void;
  setPeer(peer: BackendPeer): Promise<void>;
  removePeer(publicKey: Uint8Array): Promise<void>;
  peers(): Promise<PeerStatus[]>;
  /** Packets and datagrams dropped, by reason. */
  drops(): Record<string, number>;
  /** Removes the interface and every socket the backend made. */
  close(): Promise<void>;
}

export interface BackendOptions {
  readonly iface: string;
  readonly privateKey: Uint8Array;
  /** Where WireGuard's outgoing tunnel datagrams go. */
  readonly sink: (datagrams: readonly Uint8Array[], to: StreamEndpoint) => void;
  /** Use a UDP socket instead of the tunnel (Provision answered without a tunnel). */
  readonly udp?: boolean;
  /**
   * Server role: the server's overlay address (16 bytes). Nodes then reach only the server,
   * never each other through it: the userspace device sends peers only packets from this
   * address, and the kernel backend has nftables drop what the host would forward between them.
   */
  readonly serverAddress?: Uint8Array;
  readonly log: (message: string) => void;
}
