/**
 * Network management shared by the admin API and the local CLI: create a network, describe it,
 * issue and revoke join tokens, list and revoke nodes.
 */

import { formatIPv6, formatPrefix, parseIPv6, prefixContains } from "../../shared/net/ip.ts";
import { networkPrefix, serverAddress } from "../../shared/siderolink/addressing.ts";
import { formatJoinToken, parseJoinToken } from "../../shared/siderolink/relay-api.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { hashSecret } from "../store/secret-hash.ts";
import type { JoinTokenRecord, NetworkRecord, PeerRecord } from "../store/store.ts";
import { NetworkNotFoundError } from "../store/store.ts";
import { HttpError, InvalidInputError } from "./http-error.ts";
import { type NetworkRuntime, peerEntry } from "./runtime.ts";
import { constantTimeEqual, randomId, randomSecret } from "./secrets.ts";

/**
 * What `network create/show --json` print: everything a sidecar needs to join or serve. The
 * store keeps only hashes of secrets, so the secrets are in the answer that created the network
 * and null in every later one.
 */
export interface NetworkSummary {
  readonly name: string;
  /**
   * For nodes: `siderolink-sidecar join '<apiUrl>'`, or Talos's `siderolink.api`. With the join
   * token when it is known (at creation); otherwise the relay's base URL, to which a token from
   * `token create` is added.
   */
  readonly apiUrl: string;
  /** The node's whole command, with any flags this relay needs: `siderolink-sidecar join ...`. */
  readonly joinCommand: string | null;
  /** The first join token, at creation only. */
  readonly joinToken: string | null;
  /** The network's admin secret, at creation only. */
  readonly adminSecret: string | null;
  /** The secret that opens the network's uplink (the server sidecar's), at creation only. */
  readonly uplinkSecret: string | null;
  readonly prefix: string;
  readonly serverAddress: string;
  readonly serverPublicKey: string | null;
  /** Whether Provision refuses nodes that send no node_unique_token. */
  readonly requireUniqueToken: boolean;
  readonly uplinkConnected: boolean;
  readonly nodesConnected: number;
}

export interface TokenSummary {
  readonly id: string;
  /** `<network>.<secret>` when the token was just created; null in listings. */
  readonly joinToken: string | null;
  readonly createdAt: string;
  readonly revokedAt: string | null;
  /** Distinct nodes the token may provision; null: only the network's own limit. */
  readonly maxNodes: number | null;
}

export interface NodeSummary {
  readonly nodeUuid: string;
  readonly uniqueToken: string;
  readonly publicKey: string;
  readonly address: string;
  readonly virtualAddress: string;
  readonly talosVersion: string;
  readonly connected: boolean;
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly rxBytes: number;
  readonly txBytes: number;
  readonly rxPackets: number;
  readonly txPackets: number;
}

export interface NetworkCreation {
  /**
   * Take the prefix SideroLink's agent and Omni use, the one of an empty installation id
   * (fdae:41e4:649b:9303::/64, server ::1), so that kernel arguments written for Omni
   * (`talos.events.sink=[fdae:41e4:649b:9303::1]:8090`, ...) reach this network's server.
   * Every network created so shares that prefix.
   */
  readonly omniPrefix?: boolean;
  /** Refuse Provision calls without node_unique_token (docs/security.md). */
  readonly requireUniqueToken?: boolean;
}

/** A network's secrets in clear: they exist only when it is created, and with their holders. */
export interface NetworkSecrets {
  readonly adminSecret: string;
  readonly uplinkSecret: string;
  readonly joinToken: string;
}

export interface CreatedNetwork extends NetworkSecrets {
  readonly network: NetworkRecord;
}

/**
 * Creates the network with an installation id (fresh, or the empty one with `omniPrefix`), an
 * admin secret, an uplink secret and one join token.
 */
export async function initializeNetwork(
  runtime: NetworkRuntime,
  now = Date.now(),
  creation: NetworkCreation = {},
): Promise<CreatedNetwork> {
  const adminSecret = randomSecret();
  const uplinkSecret = randomSecret();
  const tokenSecret = randomSecret();
  const network = await runtime.store.createNetwork({
    installationId: creation.omniPrefix ? "" : crypto.randomUUID(),
    adminSecretHash: hashSecret(adminSecret),
    uplinkSecretHash: hashSecret(uplinkSecret),
    requireUniqueToken: creation.requireUniqueToken ?? false,
    createdAt: now,
  });
  await runtime.store.addToken({
    id: randomId(),
    secretHash: hashSecret(tokenSecret),
    createdAt: now,
    revokedAt: null,
    maxNodes: null,
  });
  return {
    network,
    adminSecret,
    uplinkSecret,
    joinToken: formatJoinToken(network.name, tokenSecret),
  };
}

/**
 * A new uplink secret for the network (shown once): from now on only it opens the uplink, and
 * neither the previous uplink secret nor, for a network that had none, the admin secret does.
 * The live uplink keeps its connection; its next one needs the new secret.
 */
export async function mintUplinkSecret(runtime: NetworkRuntime): Promise<string> {
  await requireNetwork(runtime);
  const secret = randomSecret();
  await runtime.store.setUplinkSecretHash(hashSecret(secret));
  return secret;
}

/**
 * Forgets the pinned server key (an operator's action: the management server's key changed) and
 * closes the network's uplinks, so that the next uplink's HELLO pins its own key.
 */
export async function resetServerKey(runtime: NetworkRuntime): Promise<void> {
  await requireNetwork(runtime);
  await runtime.store.setServerPublicKey(null);
  runtime.hub.dropUplinks(
    CloseCode.ServerKeyMismatch,
    "server key reset by the operator; the next uplink's HELLO pins its key",
  );
}

/** Turns the network's refusal of empty node_unique_tokens on or off. */
export async function setRequireUniqueToken(
  runtime: NetworkRuntime,
  required: boolean,
): Promise<void> {
  await requireNetwork(runtime);
  await runtime.store.setRequireUniqueToken(required);
}

/** What `node admit` did for a node UUID. */
export interface NodeAdmission {
  readonly nodeUuid: string;
  /** Revoked identities of the UUID lifted: it may provision again. */
  readonly revocationsLifted: number;
  /** Its record may be taken over once, whatever unique token and key come (a reinstall). */
  readonly rebindAllowed: boolean;
}

/**
 * Lets a node UUID in again: lifts its revocations (`node revoke` keeps it out until then), and
 * lets its next Provision take its record over whatever unique token and key it brings (a
 * reinstalled machine keeps its addresses). 404 when the UUID is neither revoked nor known.
 */
export async function admitNode(runtime: NetworkRuntime, nodeUuid: string): Promise<NodeAdmission> {
  await requireNetwork(runtime);
  const canonical = nodeUuid.toLowerCase();
  const revocationsLifted = await runtime.store.liftRevocations(canonical);
  const rebindAllowed = await runtime.store.allowRebind(canonical);
  if (revocationsLifted === 0 && !rebindAllowed) {
    throw new HttpError(
      404,
      `node ${JSON.stringify(nodeUuid)} is neither revoked nor provisioned in network ${runtime.name} (see node list); a new node needs no admission`,
    );
  }
  return { nodeUuid: canonical, revocationsLifted, rebindAllowed };
}

/** The network's record; rejects with NetworkNotFoundError when it does not exist. */
export async function requireNetwork(runtime: NetworkRuntime): Promise<NetworkRecord> {
  const network = await runtime.store.network();
  if (!network) throw new NetworkNotFoundError(runtime.name);
  return network;
}

/**
 * `baseUrl` is how nodes reach this relay (`grpc://host:port`, `https://host`); the API URL
 * adds the join token and asks for the tunnel, as Talos's `siderolink.api` expects. `created`
 * (from initializeNetwork, in the same call) puts the new secrets in the summary. `joinFlags`
 * are what the sidecar needs besides the URL to reach this relay.
 */
export async function describeNetwork(
  runtime: NetworkRuntime,
  baseUrl: string,
  created?: NetworkSecrets,
  joinFlags = "",
): Promise<NetworkSummary> {
  const network = await requireNetwork(runtime);
  const joinToken = created?.joinToken ?? null;
  const prefix = networkPrefix(network.installationId);
  const url = joinToken ? apiUrl(baseUrl, joinToken) : baseUrl;
  return {
    name: network.name,
    apiUrl: url,
    joinCommand: joinToken
      ? `siderolink-sidecar join '${url}'${joinFlags ? ` ${joinFlags}` : ""}`
      : null,
    joinToken,
    adminSecret: created?.adminSecret ?? null,
    uplinkSecret: created?.uplinkSecret ?? null,
    prefix: formatPrefix(prefix),
    serverAddress: formatIPv6(serverAddress(prefix)),
    serverPublicKey: network.serverPublicKey,
    requireUniqueToken: network.requireUniqueToken,
    uplinkConnected: runtime.hub.hasUplink,
    nodesConnected: runtime.hub.nodeCount,
  };
}

export function apiUrl(baseUrl: string, joinToken: string): string {
  const url = new URL(baseUrl);
  url.searchParams.set("jointoken", joinToken);
  url.searchParams.set("grpc_tunnel", "true");
  return url.toString();
}

/**
 * A new join token; `maxNodes` caps how many distinct nodes it may provision (default: no cap of
 * its own, the network's node limit still applies).
 */
export async function createToken(
  runtime: NetworkRuntime,
  now = Date.now(),
  maxNodes: number | null = null,
): Promise<TokenSummary> {
  await requireNetwork(runtime);
  if (maxNodes !== null && (!Number.isSafeInteger(maxNodes) || maxNodes < 1)) {
    throw new InvalidInputError(
      `max nodes ${JSON.stringify(maxNodes)} is not a whole number >= 1; omit it for no limit of the token's own`,
    );
  }
  const secret = randomSecret();
  const token: JoinTokenRecord = {
    id: randomId(),
    secretHash: hashSecret(secret),
    createdAt: now,
    revokedAt: null,
    maxNodes,
  };
  await runtime.store.addToken(token);
  return tokenSummary(token, formatJoinToken(runtime.name, secret));
}

export async function listTokens(runtime: NetworkRuntime): Promise<TokenSummary[]> {
  await requireNetwork(runtime);
  return (await runtime.store.tokens()).map((token) => tokenSummary(token, null));
}

/** Revokes by id or by the whole `<network>.<secret>` text; false when no active token matched. */
export async function revokeToken(
  runtime: NetworkRuntime,
  idOrToken: string,
  now = Date.now(),
): Promise<boolean> {
  await requireNetwork(runtime);
  const tokens = await runtime.store.tokens();
  const parsed = parseJoinToken(idOrToken);
  const presented = parsed?.network === runtime.name ? hashSecret(parsed.secret) : undefined;
  // Digests compared in constant time, like every secret.
  const match = tokens.find(
    (token) =>
      token.id === idOrToken ||
      (presented !== undefined && constantTimeEqual(token.secretHash, presented)),
  );
  return match ? runtime.store.revokeToken(match.id, now) : false;
}

export async function listNodes(runtime: NetworkRuntime): Promise<NodeSummary[]> {
  await requireNetwork(runtime);
  return (await runtime.store.peers()).map((peer) => nodeSummary(runtime, peer));
}

/**
 * Revokes nodes matching `selector` (node UUID, address, virtual address or public key): they
 * leave the store, the uplink drops them and their streams close, and Provision refuses their
 * identities (UUID and unique token) until `admitNode`. Returns the revoked nodes.
 */
export async function revokeNodes(
  runtime: NetworkRuntime,
  selector: string,
  now: number = Date.now(),
): Promise<NodeSummary[]> {
  await requireNetwork(runtime);
  const matches = (await runtime.store.peers()).filter(
    (peer) =>
      peer.nodeUuid === selector ||
      peer.address === selector ||
      peer.virtualAddress === selector ||
      peer.publicKey === selector,
  );
  const revoked: NodeSummary[] = [];
  for (const peer of matches) {
    revoked.push(nodeSummary(runtime, peer));
    await runtime.store.revokeIdentity(peer.nodeUuid, peer.uniqueToken, now);
    await runtime.store.removePeer(peer.nodeUuid);
    runtime.hub.removePeer(peerEntry(peer), "node revoked by the operator");
  }
  return revoked;
}

/**
 * Fixes the address a node UUID gets when it first provisions (undefined removes the pair). The
 * address must be a host of the network's prefix other than the server's.
 */
export async function assignAddress(
  runtime: NetworkRuntime,
  nodeUuid: string,
  address: string | undefined,
): Promise<string | undefined> {
  const network = await requireNetwork(runtime);
  if (nodeUuid === "") throw new InvalidInputError("node UUID is empty");
  if (address === undefined) {
    await runtime.store.setPredefinedAddress(nodeUuid, undefined);
    return undefined;
  }
  const prefix = networkPrefix(network.installationId);
  const bytes = parseIPv6(address, "address");
  const canonical = formatIPv6(bytes);
  if (
    !prefixContains(prefix, bytes) ||
    canonical === formatIPv6(serverAddress(prefix)) ||
    canonical === formatIPv6(prefix.address)
  ) {
    throw new InvalidInputError(
      `address ${canonical} is not a node address of network ${network.name}: pick a host in ${formatPrefix(prefix)} other than ::0 and ::1`,
    );
  }
  await runtime.store.setPredefinedAddress(nodeUuid, canonical);
  return canonical;
}

function tokenSummary(token: JoinTokenRecord, joinToken: string | null): TokenSummary {
  return {
    id: token.id,
    joinToken,
    createdAt: new Date(token.createdAt).toISOString(),
    revokedAt: token.revokedAt === null ? null : new Date(token.revokedAt).toISOString(),
    maxNodes: token.maxNodes,
  };
}

function nodeSummary(runtime: NetworkRuntime, peer: PeerRecord): NodeSummary {
  return {
    nodeUuid: peer.nodeUuid,
    uniqueToken: peer.uniqueToken,
    publicKey: peer.publicKey,
    address: peer.address,
    virtualAddress: peer.virtualAddress,
    talosVersion: peer.talosVersion,
    connected: runtime.hub.hasNode(peer.virtualAddress),
    firstSeen: new Date(peer.firstSeen).toISOString(),
    lastSeen: new Date(peer.lastSeen).toISOString(),
    rxBytes: peer.rxBytes,
    txBytes: peer.txBytes,
    rxPackets: peer.rxPackets,
    txPackets: peer.txPackets,
  };
}
