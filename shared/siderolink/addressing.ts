import { sha256 } from "@noble/hashes/sha2.js";
import { IPV6_SIZE, maskAddress, type Prefix } from "../net/ip.ts";

/**
 * Talos's ULA prefixes (RFC 4193, with a Talos twist): byte 0 is 0xfd, bytes 1-6 come from
 * SHA-256 of an installation or cluster id, byte 7 names the purpose, and the prefix is a /64:
 *
 *   fd | hash[17..22] (6B) | purpose (1B) | 64 bits for hosts
 *
 * Hash bytes 16 and 23-31 are overwritten or masked away; only the 48 bits above are kept.
 */
const ULA_FIRST_BYTE = 0xfd;
const PURPOSE_BYTE = 7;
const ULA_PREFIX_BITS = 64;

/** Byte 7 of a Talos ULA prefix. */
const UlaPurpose = {
  KubeSpan: 0x02,
  SideroLink: 0x03,
  /** WireGuard over a stream: the virtual addresses that stand in for UDP endpoints. */
  VirtualSideroLink: 0x04,
} as const;
type UlaPurpose = (typeof UlaPurpose)[keyof typeof UlaPurpose];

/**
 * The port of every virtual endpoint a SideroLink agent hands out in `grpc_peer_addr_port`
 * (Omni uses 50889). Only the address identifies a peer; the port is carried along unchanged.
 */
export const VIRTUAL_PEER_PORT = 50888;

const NODE_BITS_START = 8;

/** Fills its argument with random bytes. Tests inject a fixed sequence. */
export type RandomSource = (bytes: Uint8Array) => void;

const defaultRandom: RandomSource = (bytes) => {
  crypto.getRandomValues(bytes);
};

function ulaPrefix(id: string, purpose: UlaPurpose): Prefix {
  const hash = sha256(new TextEncoder().encode(id));
  const address = hash.slice(hash.length - IPV6_SIZE);
  address[0] = ULA_FIRST_BYTE;
  address[PURPOSE_BYTE] = purpose;
  return { address: maskAddress(address, ULA_PREFIX_BITS), bits: ULA_PREFIX_BITS };
}

/** The SideroLink network of an installation: the server is ::1, nodes take random hosts. */
export function networkPrefix(installationId: string): Prefix {
  return ulaPrefix(installationId, UlaPurpose.SideroLink);
}

/** The network of virtual endpoints, the same for every installation. */
export function virtualNetworkPrefix(): Prefix {
  return ulaPrefix("", UlaPurpose.VirtualSideroLink);
}

/** The KubeSpan network of a cluster, for the mesh mode. */
export function kubeSpanPrefix(clusterId: string): Prefix {
  return ulaPrefix(clusterId, UlaPurpose.KubeSpan);
}

/** The server's overlay address: the first host of the prefix. */
export function serverAddress(prefix: Prefix): Uint8Array {
  const address = maskAddress(prefix.address, prefix.bits);
  address[IPV6_SIZE - 1] |= 1;
  return address;
}

/**
 * A node address: the prefix's first 64 bits and 64 random bits. Draws again in the (2^-63)
 * case of landing on the prefix's own address or the server's, which would cut the node off.
 */
export function randomNodeAddress(
  prefix: Prefix,
  random: RandomSource = defaultRandom,
): Uint8Array {
  if (prefix.bits > ULA_PREFIX_BITS) {
    throw new RangeError(`node addresses need a prefix of /64 or shorter, got /${prefix.bits}`);
  }
  const network = maskAddress(prefix.address, prefix.bits);
  const server = serverAddress(prefix);
  const address = network.slice();
  const host = address.subarray(NODE_BITS_START);
  do {
    random(host);
  } while (equalBytes(address, network) || equalBytes(address, server));
  return address;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return a.length === b.length;
}
