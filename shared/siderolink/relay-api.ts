/**
 * The relay's HTTP surface as its clients see it, in one place for the relay (Node and Worker)
 * and the sidecar:
 *
 *   GET /v1/networks/NETWORK/tunnel   a node's stream (WebSocket). The `x-siderolink-ipv6-addr`
 *                                     header carries the node's `grpc_peer_addr_port`. Only a
 *                                     header: every client can send one (no browser speaks this
 *                                     protocol, and only browsers' WebSocket API cannot), and a
 *                                     query string would put the address in access logs.
 *   GET /v1/networks/NETWORK/uplink   the management server's uplink (WebSocket), with
 *                                     `Authorization: Bearer <admin secret>`.
 *
 * Plain gRPC `CreateStream` carries the same `x-siderolink-ipv6-addr` as metadata. A join token
 * reads `<network>.<secret>`, so any edge can route a Provision call by its token alone.
 */
import { formatIPv6, parseAddrPort, parseIPv6 } from "../net/ip.ts";
import { SideroLinkError } from "./errors.ts";

/** Header and gRPC metadata naming a node stream's `grpc_peer_addr_port`. */
export const PEER_ADDRESS_HEADER = "x-siderolink-ipv6-addr";

/** Prefix of every per-network route, and the path that creates (POST) or lists (GET) them. */
export const NETWORKS_PATH = "/v1/networks";
/** Route patterns (Hono syntax) the relay registers for the two WebSocket streams. */
export const TUNNEL_ROUTE = `${NETWORKS_PATH}/:network/tunnel`;
export const UPLINK_ROUTE = `${NETWORKS_PATH}/:network/uplink`;

const NETWORK_IN_PATH = new RegExp(`^${NETWORKS_PATH}/([^/]+)(?:/|$)`);
const NETWORK_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const JOIN_TOKEN_SEPARATOR = ".";

/** The path of a network's node stream. */
export function tunnelPath(network: string): string {
  return `${NETWORKS_PATH}/${encodeURIComponent(network)}/tunnel`;
}

/** The path of a network's uplink. */
export function uplinkPath(network: string): string {
  return `${NETWORKS_PATH}/${encodeURIComponent(network)}/uplink`;
}

/** The network a `/v1/networks/NETWORK[/...]` path names, percent-decoded; else undefined. */
export function networkInPath(pathname: string): string | undefined {
  const match = NETWORK_IN_PATH.exec(pathname);
  if (!match) return undefined;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return undefined;
  }
}

/** Checks a network name and returns it; the error says what is allowed. */
export function validateNetworkName(name: string): string {
  if (!NETWORK_NAME.test(name)) {
    throw new SideroLinkError(
      "invalid",
      "network name",
      `${JSON.stringify(name)} is not allowed: use 1-63 lower-case letters, digits and '-', starting with a letter or digit`,
    );
  }
  return name;
}

export function isNetworkName(name: string): boolean {
  return NETWORK_NAME.test(name);
}

export function formatJoinToken(network: string, secret: string): string {
  return `${network}${JOIN_TOKEN_SEPARATOR}${secret}`;
}

/**
 * Splits a join token at its first '.'; undefined when it does not have the `<network>.<secret>`
 * form (the network part is not checked: see isNetworkName).
 */
export function parseJoinToken(token: string): { network: string; secret: string } | undefined {
  const dot = token.indexOf(JOIN_TOKEN_SEPARATOR);
  if (dot <= 0 || dot === token.length - 1) return undefined;
  return { network: token.slice(0, dot), secret: token.slice(dot + 1) };
}

/**
 * The address of an `x-siderolink-ipv6-addr` value (`[addr]:port` or a bare address) as
 * canonical text, the form peers are stored under; undefined when it is neither form.
 */
export function canonicalPeerAddress(value: string): string | undefined {
  try {
    return formatIPv6(
      value.startsWith("[") ? parseAddrPort(value, PEER_ADDRESS_HEADER).address : parseIPv6(value),
    );
  } catch {
    return undefined;
  }
}

/**
 * Part of the PermissionDenied message a Provision gets for an identity an operator revoked
 * (`siderolink-relay node revoke`), until `siderolink-relay node admit`.
 */
export const REVOKED_NODE = "was revoked by the operator";
