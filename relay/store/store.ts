/**
 * What the relay remembers about one network, behind a small async interface so each runtime
 * brings its own storage: SqlNetworkStore (sql-store.ts) over a SqlExecutor runs on node:sqlite
 * (relay/node/sqlite.ts) and on a Durable Object's SQLite storage alike.
 *
 * Keys are base64 text (WireGuard's own encoding), addresses canonical IPv6 text, times
 * milliseconds since the Unix epoch.
 */

/** A network: one overlay with its own address prefix, secrets and peers. */
export interface NetworkRecord {
  /** 1-63 of [a-z0-9-], starting with a letter or digit: it appears in URLs and join tokens. */
  readonly name: string;
  /** Seeds the address prefix (NetworkPrefix(installationId)). */
  readonly installationId: string;
  /**
   * SHA-256 (hashSecret) of the secret that authenticates this network's admin calls; the secret
   * itself is shown once, when the network is created.
   */
  readonly adminSecretHash: string;
  /**
   * The management server's WireGuard public key, pinned by the first uplink's HELLO: an uplink
   * presenting another is refused until an operator resets it (null again).
   */
  readonly serverPublicKey: string | null;
  /**
   * SHA-256 of the secret that opens the uplink (hashSecret); null for a network created before
   * uplinks had their own secret, whose uplink the admin secret still opens until one is minted.
   */
  readonly uplinkSecretHash: string | null;
  /** Whether Provision refuses an empty node_unique_token. */
  readonly requireUniqueToken: boolean;
  readonly createdAt: number;
}

/**
 * A join token reads `<network>.<secret>`; `id` names it for listing and revoking. Only the
 * secret's SHA-256 (hashSecret) is kept: the token is shown once, when it is created.
 */
export interface JoinTokenRecord {
  readonly id: string;
  readonly secretHash: string;
  readonly createdAt: number;
  readonly revokedAt: number | null;
  /** How many distinct nodes the token may provision; null: no limit of its own. */
  readonly maxNodes: number | null;
}

/**
 * A provisioned node, one per node UUID. Its unique token binds the UUID: a Provision with
 * another token (an empty one included) may not take the record over, unless `rebindAllowed`.
 */
export interface PeerRecord {
  readonly nodeUuid: string;
  /** The node's unique token, "" when it sent none. */
  readonly uniqueToken: string;
  /** The join token (its id) that first provisioned the node, for per-token quotas. */
  readonly joinTokenId: string | null;
  /** An operator admitted the next Provision of this UUID whatever its unique token and key. */
  readonly rebindAllowed: boolean;
  readonly publicKey: string;
  /** The node's overlay address in the network prefix. */
  readonly address: string;
  /** The address in the virtual prefix that names the node's tunnel stream. */
  readonly virtualAddress: string;
  readonly talosVersion: string;
  readonly firstSeen: number;
  readonly lastSeen: number;
  /** Traffic through the relay, seen from the node: rx = towards the node. */
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly rxPackets: number;
  readonly txPackets: number;
}

/** Traffic to add to a peer's counters, and when it was last seen. */
export interface TrafficDelta {
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly rxPackets: number;
  readonly txPackets: number;
  readonly lastSeen: number;
}

/** One network's storage. Methods on a network that does not exist reject, except `network()`. */
export interface NetworkStore {
  readonly name: string;
  network(): Promise<NetworkRecord | undefined>;
  /** Creates the network; rejects with StoreConflictError when it exists. */
  createNetwork(init: Omit<NetworkRecord, "name" | "serverPublicKey">): Promise<NetworkRecord>;
  /** Sets the server's key; null forgets it, so that the next uplink's HELLO pins its own. */
  setServerPublicKey(publicKey: string | null): Promise<void>;
  /**
   * Pins `publicKey` when no key is pinned; true when it is (now) the pinned key, false when
   * another one is. Atomic: of two HELLOs racing with different keys, one pins.
   */
  pinServerPublicKey(publicKey: string): Promise<boolean>;
  setUplinkSecretHash(hash: string): Promise<void>;
  setRequireUniqueToken(required: boolean): Promise<void>;

  /** All tokens, revoked ones included, oldest first. */
  tokens(): Promise<JoinTokenRecord[]>;
  addToken(token: JoinTokenRecord): Promise<void>;
  /** Marks the token revoked; false when no active token has this id. */
  revokeToken(id: string, at: number): Promise<boolean>;

  peers(): Promise<PeerRecord[]>;
  peerCount(): Promise<number>;
  /** Distinct nodes the join token with this id provisioned. */
  peerCountByToken(tokenId: string): Promise<number>;
  peerByUuid(nodeUuid: string): Promise<PeerRecord | undefined>;
  peerByVirtualAddress(virtualAddress: string): Promise<PeerRecord | undefined>;
  /** Inserts or replaces the peer with the same node UUID; rejects with StoreConflictError when its addresses are taken by another peer. */
  savePeer(peer: PeerRecord): Promise<void>;
  /** Removes the peer; false when there was none. */
  removePeer(nodeUuid: string): Promise<boolean>;
  /** Lets the next Provision of this UUID rebind it (admit); false when there is no such peer. */
  allowRebind(nodeUuid: string): Promise<boolean>;
  /** Adds to the counters of the peer with this virtual address (no-op if it is gone). */
  recordTraffic(virtualAddress: string, delta: TrafficDelta): Promise<void>;

  /** Marks an identity revoked: Provision refuses it until `admitNode`. */
  revokeIdentity(nodeUuid: string, uniqueToken: string, at: number): Promise<void>;
  identityRevoked(nodeUuid: string, uniqueToken: string): Promise<boolean>;
  /** Lifts the revocation of every identity with this node UUID; returns how many. */
  liftRevocations(nodeUuid: string): Promise<number>;

  /** Addresses configured ahead of time for node UUIDs. */
  predefinedAddress(nodeUuid: string): Promise<string | undefined>;
  setPredefinedAddress(nodeUuid: string, address: string | undefined): Promise<void>;
}

/** A uniqueness rule was broken: the network exists, or an address is taken. */
export class StoreConflictError extends Error {
  override readonly name = "StoreConflictError";
}

/**
 * The storage cannot take the call now: locked by another process, read-only, full or failing.
 * Nothing was changed; the message names the cause and what to check.
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** The network the call was about does not exist. */
export class NetworkNotFoundError extends Error {
  override readonly name = "NetworkNotFoundError";
  readonly network: string;
  constructor(network: string) {
    super(
      `network ${JSON.stringify(network)} does not exist; create it with: siderolink-relay network create ${network}`,
    );
    this.network = network;
  }
}
