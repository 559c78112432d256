/**
 * Who a request came from, for per-client limits: the TCP peer, or behind a trusted reverse
 * proxy the address that proxy put in `X-Forwarded-For`; and the key a client's budget is kept
 * under, where every address of one IPv6 /64 is one client (a host gets a whole /64 and picks
 * addresses in it at will).
 */
import {
  formatIP,
  formatIPv6,
  isIPv4Mapped,
  maskAddress,
  type Prefix,
  parseIP,
  prefixContains,
} from "../../shared/net/ip.ts";

export const FORWARDED_FOR_HEADER = "x-forwarded-for";

/** Bits of an IPv6 address that name one client: a /64 is what one host or site gets. */
const CLIENT_IPV6_BITS = 64;

/**
 * The client's address: `peer` itself, unless `peer` is one of `trustedProxies`; then the last
 * address in `forwardedFor` that is not a trusted proxy (each proxy appends the address it saw,
 * so entries left of the first untrusted one are the client's to invent). Undefined when
 * nothing names an address.
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | null | undefined,
  trustedProxies: readonly Prefix[],
): string | undefined {
  if (peer === undefined || trustedProxies.length === 0 || !isTrusted(peer, trustedProxies))
    return peer;
  if (!forwardedFor) return peer;
  const hops = forwardedFor.split(",");
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim();
    if (parseIP(unbracketed(hop)) === undefined) return peer;
    if (!isTrusted(hop, trustedProxies)) return hop;
  }
  return peer;
}

/**
 * The key of a client's rate budget: an IPv4 address as written (IPv4-mapped IPv6 included),
 * an IPv6 address as its /64 (`2001:db8:1:2::/64`); text that is no address as it is.
 */
export function clientKey(address: string): string {
  const bytes = parseIP(address);
  if (bytes === undefined) return address;
  if (bytes.length === 4) return formatIP(bytes);
  if (isIPv4Mapped(bytes)) return formatIP(bytes.subarray(12));
  return `${formatIPv6(maskAddress(bytes, CLIENT_IPV6_BITS))}/${CLIENT_IPV6_BITS}`;
}

function isTrusted(address: string, trustedProxies: readonly Prefix[]): boolean {
  const bytes = parseIP(unbracketed(address));
  if (bytes === undefined) return false;
  const plain = isIPv4Mapped(bytes) ? bytes.subarray(12) : bytes;
  return trustedProxies.some((prefix) => prefixContains(prefix, plain));
}

/** `[::1]` (as some proxies write IPv6) -> `::1`. */
function unbracketed(text: string): string {
  return text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
}
