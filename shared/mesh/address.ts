/**
 * A mesh member's address: the mesh prefix (WgLAN's non-routing default `0200:1001::/64`) and
 * a modified EUI-64 interface identifier (RFC 4291 appendix A) derived from the member's
 * WireGuard public key.
 *
 * WgLAN expands a MAC address into EUI-64. A MAC is a poor identity for this: VM clones and
 * containers share or randomize them, and a replaced NIC renumbers the host. The public key is
 * what the member keeps in its state directory anyway, so the address is stable exactly as long
 * as the member's identity is, and any member can check that a record's address belongs to the
 * record's key. The key is hashed into a 48-bit pseudo-MAC (locally administered, unicast),
 * which is expanded the way EUI-64 expands a MAC: FF:FE in the middle and the
 * universal/local bit inverted.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { formatIPv6, IPV6_SIZE, type Prefix, parseNetworkPrefix } from "../net/ip.ts";
import { SideroLinkError } from "../siderolink/errors.ts";

export const DEFAULT_MESH_PREFIX = "0200:1001::/64";
/** The interface identifier fills the low 64 bits, so a mesh prefix is at most this long. */
export const MAX_MESH_PREFIX_BITS = 64;
/** Domain separation: these hash bytes are used for nothing else. */
const INTERFACE_ID_CONTEXT = new TextEncoder().encode("siderolink-edge mesh interface id v1");
const KEY_SIZE = 32;

/** Reads `--prefix`: an IPv6 network prefix of at most 64 bits. */
export function parseMeshPrefix(text: string, field = "--prefix"): Prefix {
  const prefix = parseNetworkPrefix(text, field);
  if (prefix.address.length !== IPV6_SIZE || prefix.bits > MAX_MESH_PREFIX_BITS) {
    throw new SideroLinkError(
      "invalid",
      field,
      `${JSON.stringify(text)} is not an IPv6 prefix of at most /${MAX_MESH_PREFIX_BITS}; the interface identifier needs the low 64 bits (default ${DEFAULT_MESH_PREFIX})`,
    );
  }
  return prefix;
}

/** The 8-byte modified EUI-64 interface identifier of a 32-byte WireGuard public key. */
export function meshInterfaceId(publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== KEY_SIZE) {
    throw new RangeError(`expected ${KEY_SIZE} bytes for publicKey, got ${publicKey.length}`);
  }
  const input = new Uint8Array(INTERFACE_ID_CONTEXT.length + KEY_SIZE);
  input.set(INTERFACE_ID_CONTEXT);
  input.set(publicKey, INTERFACE_ID_CONTEXT.length);
  const hash = sha256(input);
  // A locally administered unicast MAC: bit 1 of the first octet set, bit 0 clear.
  const mac = hash.subarray(0, 6);
  const first = (mac[0] | 0x02) & 0xfe;
  // EUI-64 inverts the universal/local bit, so a local MAC gives u = 0 ("not globally unique").
  return Uint8Array.of(first ^ 0x02, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]);
}

/** The member's address: the prefix's first 64 bits, then the key's interface identifier. */
export function meshAddress(prefix: Prefix, publicKey: Uint8Array): Uint8Array {
  const address = prefix.address.slice(0, IPV6_SIZE);
  address.set(meshInterfaceId(publicKey), 8);
  return address;
}

export function formatMeshAddress(prefix: Prefix, publicKey: Uint8Array): string {
  return formatIPv6(meshAddress(prefix, publicKey));
}
