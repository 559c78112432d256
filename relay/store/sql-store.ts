/** NetworkStore over any SqlExecutor (schema in schema.ts). */
import { validateNetworkName } from "../../shared/siderolink/relay-api.ts";
import type { SqlExecutor, SqlRow } from "./sql.ts";
import {
  type JoinTokenRecord,
  NetworkNotFoundError,
  type NetworkRecord,
  type NetworkStore,
  type PeerRecord,
  StoreConflictError,
  type TrafficDelta,
} from "./store.ts";

export function createSqlNetworkStore(sql: SqlExecutor, name: string): NetworkStore {
  return new SqlNetworkStore(sql, validateNetworkName(name));
}

interface NetworkRow extends SqlRow {
  name: string;
  installation_id: string;
  admin_secret_sha256: string;
  server_public_key: string | null;
  uplink_secret_hash: string | null;
  require_unique_token: number;
  created_at: number;
}

interface TokenRow extends SqlRow {
  id: string;
  secret_sha256: string;
  created_at: number;
  revoked_at: number | null;
  max_nodes: number | null;
}

interface PeerRow extends SqlRow {
  node_uuid: string;
  unique_token: string;
  join_token_id: string | null;
  rebind_allowed: number;
  public_key: string;
  address: string;
  virtual_address: string;
  talos_version: string;
  first_seen: number;
  last_seen: number;
  rx_bytes: number;
  tx_bytes: number;
  rx_packets: number;
  tx_packets: number;
}

const PEER_COLUMNS =
  "node_uuid, unique_token, join_token_id, rebind_allowed, public_key, address, virtual_address, talos_version, first_seen, last_seen, rx_bytes, tx_bytes, rx_packets, tx_packets";

class SqlNetworkStore implements NetworkStore {
  readonly name: string;
  readonly #sql: SqlExecutor;

  constructor(sql: SqlExecutor, name: string) {
    this.#sql = sql;
    this.name = name;
  }

  async network(): Promise<NetworkRecord | undefined> {
    const [row] = this.#sql.all<NetworkRow>("SELECT * FROM networks WHERE name = ?", this.name);
    return row && toNetwork(row);
  }

  async createNetwork(
    init: Omit<NetworkRecord, "name" | "serverPublicKey">,
  ): Promise<NetworkRecord> {
    const rows = this.#sql.all<NetworkRow>(
      `INSERT INTO networks (name, installation_id, admin_secret_sha256, server_public_key,
         uplink_secret_hash, require_unique_token, created_at)
       VALUES (?, ?, ?, NULL, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING *`,
      this.name,
      init.installationId,
      init.adminSecretHash,
      init.uplinkSecretHash,
      init.requireUniqueToken ? 1 : 0,
      init.createdAt,
    );
    if (rows.length === 0)
      throw new StoreConflictError(`network ${JSON.stringify(this.name)} already exists`);
    return toNetwork(rows[0]);
  }

  async setUplinkSecretHash(hash: string): Promise<void> {
    this.#expectChanged(
      this.#sql.all(
        "UPDATE networks SET uplink_secret_hash = ? WHERE name = ? RETURNING name",
        hash,
        this.name,
      ),
    );
  }

  async setRequireUniqueToken(required: boolean): Promise<void> {
    this.#expectChanged(
      this.#sql.all(
        "UPDATE networks SET require_unique_token = ? WHERE name = ? RETURNING name",
        required ? 1 : 0,
        this.name,
      ),
    );
  }

  async setServerPublicKey(publicKey: string | null): Promise<void> {
    this.#expectChanged(
      this.#sql.all(
        "UPDATE networks SET server_public_key = ? WHERE name = ? RETURNING name",
        publicKey,
        this.name,
      ),
    );
  }

  async pinServerPublicKey(publicKey: string): Promise<boolean> {
    // One statement: two uplinks saying HELLO at once cannot both pin.
    const rows = this.#sql.all(
      `UPDATE networks SET server_public_key = ?
       WHERE name = ? AND (server_public_key IS NULL OR server_public_key = ?) RETURNING name`,
      publicKey,
      this.name,
      publicKey,
    );
    if (rows.length > 0) return true;
    if ((await this.network()) === undefined) throw new NetworkNotFoundError(this.name);
    return false;
  }

  async tokens(): Promise<JoinTokenRecord[]> {
    return this.#sql
      .all<TokenRow>(
        "SELECT id, secret_sha256, created_at, revoked_at, max_nodes FROM join_tokens WHERE network = ? ORDER BY created_at, id",
        this.name,
      )
      .map((row) => ({
        id: row.id,
        secretHash: row.secret_sha256,
        createdAt: row.created_at,
        revokedAt: row.revoked_at,
        maxNodes: row.max_nodes,
      }));
  }

  async addToken(token: JoinTokenRecord): Promise<void> {
    this.#requireNetwork();
    const rows = this.#sql.all(
      `INSERT INTO join_tokens (network, id, secret_sha256, created_at, revoked_at, max_nodes)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (network, id) DO NOTHING RETURNING id`,
      this.name,
      token.id,
      token.secretHash,
      token.createdAt,
      token.revokedAt,
      token.maxNodes,
    );
    if (rows.length === 0)
      throw new StoreConflictError(`join token id ${JSON.stringify(token.id)} already exists`);
  }

  async revokeToken(id: string, at: number): Promise<boolean> {
    const rows = this.#sql.all(
      "UPDATE join_tokens SET revoked_at = ? WHERE network = ? AND id = ? AND revoked_at IS NULL RETURNING id",
      at,
      this.name,
      id,
    );
    return rows.length > 0;
  }

  async peers(): Promise<PeerRecord[]> {
    return this.#sql
      .all<PeerRow>(
        `SELECT ${PEER_COLUMNS} FROM peers WHERE network = ? ORDER BY first_seen, node_uuid`,
        this.name,
      )
      .map(toPeer);
  }

  async peerCount(): Promise<number> {
    const [row] = this.#sql.all<{ count: number }>(
      "SELECT COUNT(*) AS count FROM peers WHERE network = ?",
      this.name,
    );
    return row?.count ?? 0;
  }

  async peerCountByToken(tokenId: string): Promise<number> {
    const [row] = this.#sql.all<{ count: number }>(
      "SELECT COUNT(*) AS count FROM peers WHERE network = ? AND join_token_id = ?",
      this.name,
      tokenId,
    );
    return row?.count ?? 0;
  }

  async peerByUuid(nodeUuid: string): Promise<PeerRecord | undefined> {
    const [row] = this.#sql.all<PeerRow>(
      `SELECT ${PEER_COLUMNS} FROM peers WHERE network = ? AND node_uuid = ?`,
      this.name,
      nodeUuid,
    );
    return row && toPeer(row);
  }

  async peerByVirtualAddress(virtualAddress: string): Promise<PeerRecord | undefined> {
    const [row] = this.#sql.all<PeerRow>(
      `SELECT ${PEER_COLUMNS} FROM peers WHERE network = ? AND virtual_address = ?`,
      this.name,
      virtualAddress,
    );
    return row && toPeer(row);
  }

  async savePeer(peer: PeerRecord): Promise<void> {
    this.#requireNetwork();
    this.#sql.transaction(() => {
      const taken = this.#sql.all<{ node_uuid: string }>(
        `SELECT node_uuid FROM peers WHERE network = ? AND (address = ? OR virtual_address = ?)
         AND node_uuid <> ?`,
        this.name,
        peer.address,
        peer.virtualAddress,
        peer.nodeUuid,
      );
      if (taken.length > 0) {
        throw new StoreConflictError(
          `address ${peer.address} or ${peer.virtualAddress} already belongs to node ${taken[0].node_uuid}`,
        );
      }
      this.#sql.all(
        `INSERT INTO peers (network, ${PEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (network, node_uuid) DO UPDATE SET
           unique_token = excluded.unique_token, join_token_id = excluded.join_token_id,
           rebind_allowed = excluded.rebind_allowed, public_key = excluded.public_key, address = excluded.address,
           virtual_address = excluded.virtual_address, talos_version = excluded.talos_version,
           first_seen = excluded.first_seen, last_seen = excluded.last_seen,
           rx_bytes = excluded.rx_bytes, tx_bytes = excluded.tx_bytes,
           rx_packets = excluded.rx_packets, tx_packets = excluded.tx_packets`,
        this.name,
        peer.nodeUuid,
        peer.uniqueToken,
        peer.joinTokenId,
        peer.rebindAllowed ? 1 : 0,
        peer.publicKey,
        peer.address,
        peer.virtualAddress,
        peer.talosVersion,
        peer.firstSeen,
        peer.lastSeen,
        peer.rxBytes,
        peer.txBytes,
        peer.rxPackets,
        peer.txPackets,
      );
    });
  }

  async removePeer(nodeUuid: string): Promise<boolean> {
    const rows = this.#sql.all(
      "DELETE FROM peers WHERE network = ? AND node_uuid = ? RETURNING node_uuid",
      this.name,
      nodeUuid,
    );
    return rows.length > 0;
  }

  async allowRebind(nodeUuid: string): Promise<boolean> {
    const rows = this.#sql.all(
      "UPDATE peers SET rebind_allowed = 1 WHERE network = ? AND node_uuid = ? RETURNING node_uuid",
      this.name,
      nodeUuid,
    );
    return rows.length > 0;
  }

  async recordTraffic(virtualAddress: string, delta: TrafficDelta): Promise<void> {
    this.#sql.all(
      `UPDATE peers SET rx_bytes = rx_bytes + ?, tx_bytes = tx_bytes + ?, rx_packets = rx_packets + ?,
         tx_packets = tx_packets + ?, last_seen = MAX(last_seen, ?)
       WHERE network = ? AND virtual_address = ?`,
      delta.rxBytes,
      delta.txBytes,
      delta.rxPackets,
      delta.txPackets,
      delta.lastSeen,
      this.name,
      virtualAddress,
    );
  }

  async revokeIdentity(nodeUuid: string, uniqueToken: string, at: number): Promise<void> {
    this.#requireNetwork();
    this.#sql.all(
      `INSERT INTO revoked_identities (network, node_uuid, unique_token, revoked_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (network, node_uuid, unique_token) DO UPDATE SET revoked_at = excluded.revoked_at`,
      this.name,
      nodeUuid,
      uniqueToken,
      at,
    );
  }

  async identityRevoked(nodeUuid: string, uniqueToken: string): Promise<boolean> {
    const rows = this.#sql.all(
      "SELECT 1 FROM revoked_identities WHERE network = ? AND node_uuid = ? AND unique_token = ?",
      this.name,
      nodeUuid,
      uniqueToken,
    );
    return rows.length > 0;
  }

  async liftRevocations(nodeUuid: string): Promise<number> {
    this.#requireNetwork();
    return this.#sql.all(
      "DELETE FROM revoked_identities WHERE network = ? AND node_uuid = ? RETURNING node_uuid",
      this.name,
      nodeUuid,
    ).length;
  }

  async predefinedAddress(nodeUuid: string): Promise<string | undefined> {
    const [row] = this.#sql.all<{ address: string }>(
      "SELECT address FROM predefined_addresses WHERE network = ? AND node_uuid = ?",
      this.name,
      nodeUuid,
    );
    return row?.address;
  }

  async setPredefinedAddress(nodeUuid: string, address: string | undefined): Promise<void> {
    this.#requireNetwork();
    if (address === undefined) {
      this.#sql.all(
        "DELETE FROM predefined_addresses WHERE network = ? AND node_uuid = ?",
        this.name,
        nodeUuid,
      );
      return;
    }
    this.#sql.all(
      `INSERT INTO predefined_addresses (network, node_uuid, address) VALUES (?, ?, ?)
       ON CONFLICT (network, node_uuid) DO UPDATE SET address = excluded.address`,
      this.name,
      nodeUuid,
      address,
    );
  }

  #requireNetwork(): void {
    this.#expectChanged(this.#sql.all("SELECT name FROM networks WHERE name = ?", this.name));
  }

  #expectChanged(rows: unknown[]): void {
    if (rows.length === 0) throw new NetworkNotFoundError(this.name);
  }
}

function toNetwork(row: NetworkRow): NetworkRecord {
  return {
    name: row.name,
    installationId: row.installation_id,
    adminSecretHash: row.admin_secret_sha256,
    serverPublicKey: row.server_public_key,
    uplinkSecretHash: row.uplink_secret_hash,
    requireUniqueToken: Boolean(row.require_unique_token),
    createdAt: row.created_at,
  };
}

function toPeer(row: PeerRow): PeerRecord {
  return {
    nodeUuid: row.node_uuid,
    uniqueToken: row.unique_token,
    joinTokenId: row.join_token_id,
    rebindAllowed: row.rebind_allowed === 1,
    publicKey: row.public_key,
    address: row.address,
    virtualAddress: row.virtual_address,
    talosVersion: row.talos_version,
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    rxBytes: row.rx_bytes,
    txBytes: row.tx_bytes,
    rxPackets: row.rx_packets,
    txPackets: row.tx_packets,
  };
}
