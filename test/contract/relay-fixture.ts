/**
 * What the relay contract needs from one runtime and transport: start a relay, create networks
 * and call Provision through the admin API and a Provision protocol, open node tunnel streams on
 * the transport under test, and open the management server's uplink (a WebSocket everywhere).
 * Every fixture talks to the relay from outside (HTTP, WebSocket, gRPC), never to its modules.
 */
import type { NetworkSummary, TestUplink } from "../worker/support/clients.ts";

/** The fields of a ProvisionRequest a test sets (camelCase, as connect-es names them). */
export interface ProvisionRequest {
  readonly nodeUuid: string;
  readonly nodePublicKey: string;
  readonly joinToken?: string;
  readonly nodeUniqueToken?: string;
  readonly talosVersion?: string;
  readonly wireguardOverGrpc?: boolean;
}

export interface ProvisionReply {
  readonly serverEndpoint: readonly string[];
  readonly serverPublicKey: string;
  readonly nodeAddressPrefix: string;
  readonly serverAddress: string;
  readonly grpcPeerAddrPort: string;
}

/** How a stream ended, in the transport's own terms: WebSocket close code, or gRPC status. */
export interface Ending {
  readonly code: number;
  readonly reason: string;
}

/** A node's tunnel stream on the transport under test. */
export interface TunnelStream {
  /** Sends WireGuard datagrams (WebSocket: one NODE_DATAGRAMS batch; gRPC: one PeerPacket each). */
  sendDatagrams(datagrams: readonly Uint8Array[]): void;
  /** Sends one transport message as is (WebSocket: a message; gRPC: a message's raw bytes). */
  sendRaw(message: Uint8Array | string): void;
  /** The next `count` datagrams the relay delivered, however they were batched. */
  receive(count: number, what: string): Promise<Uint8Array[]>;
  /** Transport messages received so far (WebSocket: batches; gRPC: PeerPackets). */
  readonly messagesReceived: number;
  /** Waits for the relay to end the stream. */
  ended(): Promise<Ending>;
  readonly isOpen: boolean;
  close(): void;
}

/** A message that breaks the transport's framing, and how the relay must end its stream. */
export interface MalformedMessage {
  readonly name: string;
  readonly message: Uint8Array | string;
  readonly code: number;
  readonly reason: RegExp;
}

export interface RelayFixture {
  /** "Node relay + WebSocket" and the like, for test names. */
  readonly name: string;
  /** Provision protocols this fixture offers ("connect", "grpc-web+json", "grpc"...). */
  readonly provisionProtocols: readonly string[];
  /** Whether the tunnel route names its network (WebSocket) or finds it by address (gRPC). */
  readonly tunnelNamesNetwork: boolean;
  /** Whether one transport message carries a batch of datagrams (WebSocket) or one (gRPC). */
  readonly batches: boolean;
  /** Whether the tunnel's URL has a query string a client could put the address in (WebSocket). */
  readonly addressInQuery: boolean;
  /** The relay's per-network peer cap when the fixture sets it, so ResourceExhausted is reachable. */
  readonly maxPeersPerNetwork: number | undefined;
  /**
   * How the relay ends a node stream that sends an uplink's tagged PEER_DATAGRAMS frame (posing
   * as the uplink to reach another node); undefined where the transport carries those bytes as
   * one opaque datagram (gRPC), which the relay then drops as not WireGuard.
   */
  readonly taggedFrameEnding: { readonly code: number; readonly reason: RegExp } | undefined;
  /** Messages that break this transport's framing. */
  readonly malformed: readonly MalformedMessage[];
  /** The transport's code for a hub close code (identity on WebSocket, a gRPC status on gRPC). */
  endingCode(closeCode: number): number;

  start(): Promise<void>;
  /** The relay's HTTP base (admin API, uplink WebSocket). */
  readonly url: URL;
  /** Creates a network with a name no other test uses, through the operator admin API. */
  createNetwork(): Promise<NetworkSummary>;
  /**
   * Provision over one of `provisionProtocols`; a refusal rejects with a ConnectError whose code
   * is the gRPC status (Connect and gRPC share the numbers) and whose rawMessage is the status
   * message as a client reads it.
   */
  provision(protocol: string, request: ProvisionRequest): Promise<ProvisionReply>;
  /** Opens a node stream for `peerAddrPort`; `network` is what the route names, if it names one. */
  openTunnel(network: string, peerAddrPort: string, via?: "header" | "query"): TunnelStream;
  /** The relay-wide operator token. */
  readonly operatorToken: string;
  /**
   * Opens the management server's uplink WebSocket with this secret (not yet said HELLO); its
   * HELLO presents `serverKey`, or a fresh key.
   */
  openUplink(network: string, secret: string, serverKey?: Uint8Array): TestUplink;
  close(): Promise<void>;
}
