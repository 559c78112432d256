/**
 * Network management shared by the admin API and the local CLI: create a network, describe it,
 * issue and revoke join tokens, list and revoke nodes.
 */

import { formatIPv6, formatPrefix, parseIPv6, prefixContains } from "../../shared/net/ip.ts";
import { networkPrefix, serverAddress } from "../../shared/siderolink/addressing.ts";
import { formatJoinToken } from "../../shared/siderolink/relay-api.ts";
import type { JoinTokenRecord, NetworkRecord, PeerRecord } from "../store/store.ts";
import { NetworkNotFoundError } from "../store/store.ts";
import { InvalidInputError } from "./http-error.ts";
import { type NetworkRuntime, peerEntry } from "./runtime.ts";
import { constantTimeEqual, randomId, randomSecret } from "./secrets.ts";

/** What `network create/show --json` print: everything a sidecar needs to join or serve. */
export interface NetworkSummary {
  readonly name: string;
  /** For nodes: `siderolink-sidecar join '<apiUrl>'`, or Talos's `siderolink.api`. */
  readonly apiUrl: string;
  /** The oldest active join token, or null when all are revoked. */
  readonly joinToken: string | null;
  readonly adminSecret: string;
  readonly prefix: string;
  readonly serverAddress: string;
  readonly serverPublicKey: string | null;
  readonly uplinkConnected: boolean;
  readonly nodesConnected: number;
}

export interface TokenSummary {
  readonly id: string;
  readonly joinToken: string;
  readonly createdAt: string;
  readonly revokedAt: string | null;
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

/** Creates the network with a fresh installation id, admin secret and one join token. */
export async function initializeNetwork(
  runtime: NetworkRuntime,
  now = Date.now(),
): Promise<NetworkRecord> {
  const network = await runtime.store.createNetwork({
    installationId: crypto.randomUUID(),
    adminSecret: randomSecret(),
    createdAt: now,
  });
  await runtime.store.addToken({
    id: randomId(),
    secret: randomSecret(),
    createdAt: now,
    revokedAt: null,
  });
  return network;
}

/** The network's record; rejects with NetworkNotFoundError when it does not exist. */
export async function requireNetwork(runtime: NetworkRuntime): Promise<NetworkRecord> {
  const network = await runtime.store.network();
  if (!network) throw new NetworkNotFoundError(runtime.name);
  return network;
}

/**
 * `baseUrl` is how nodes reach this relay (`grpc://host:port`, `https://host`); the API URL
 * adds the join token and asks for the tunnel, as Talos's `siderolink.api` expects.
 */
export async function describeNetwork(
  runtime: NetworkRuntime,
  baseUrl: string,
): Promise<NetworkSummary> {
  const network = await requireNetwork(runtime);
  const active = (await runtime.store.tokens()).find((token) => token.revokedAt === null);
  const joinToken = active ? formatJoinToken(network.name, active.secret) : null;
  const prefix = networkPrefix(network.installationId);
  return {
    name: network.name,
    apiUrl: joinToken ? apiUrl(baseUrl, joinToken) : baseUrl,
    joinToken,
    adminSecret: network.adminSecret,
    prefix: formatPrefix(prefix),
    serverAddress: formatIPv6(serverAddress(prefix)),
    serverPublicKey: network.serverPublicKey,
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

export async function createToken(
  runtime: NetworkRuntime,
  now = Date.now(),
): Promise<TokenSummary> {
  await requireNetwork(runtime);
  const token: JoinTokenRecord = {
    id: randomId(),
    secret: randomSecret(),
    createdAt: now,
    revokedAt: null,
  };
  await runtime.store.addToken(token);
  return tokenSummary(runtime.name, token);
}

export async function listTokens(runtime: NetworkRuntime): Promise<TokenSummary[]> {
  await requireNetwork(runtime);
  return (await runtime.store.tokens()).map((token) => tokenSummary(runtime.name, token));
}

/** Revokes by id or by the whole `<network>.<secret>` text; false when no active token matched. */
export async function revokeToken(
  runtime: NetworkRuntime,
  idOrToken: string,
  now = Date.now(),
): Promise<boolean> {
  await requireNetwork(runtime);
  const tokens = await runtime.store.tokens();
  // The whole token is a secret: compared in constant time, like every secret.
  const match = tokens.find(
    (token) =>
      token.id === idOrToken ||
      constantTimeEqual(formatJoinToken(runtime.name, token.secret), idOrToken),
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
    await runtime.store.removePeer(peer.nodeUuid, peer.uniqueToken);
    runtime.hub.removePeer(peerEntry(peer), "node revoked by the operator");
  }
  return revoked;
}

/** Lets a revoked node UUID provision again; returns how many revoked identities it had. */
export async function admitNode(runtime: NetworkRuntime, nodeUuid: string): Promise<number> {
  await requireNetwork(runtime);
  return runtime.store.admitNode(nodeUuid);
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

function tokenSummary(network: string, token: JoinTokenRecord): TokenSummary {
  return {
    id: token.id,
    joinToken: formatJoinToken(network, token.secret),
    createdAt: new Date(token.createdAt).toISOString(),
    revokedAt: token.revokedAt === null ? null : new Date(token.revokedAt).toISOString(),
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
