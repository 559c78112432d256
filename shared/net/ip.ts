/**
 * IP addresses as bytes and text, for every part of the project: 4 bytes for IPv4, 16 for IPv6,
 * most significant first. Text is read in the RFC 4291 forms (`fd00::1`, `0:0:0:0:0:0:0:1`,
 * `::ffff:192.0.2.1`) and dotted quads, and written as Go's netip writes it: dotted quads, and
 * RFC 5952 canonical IPv6 with IPv4-mapped addresses as `::ffff:a.b.c.d`.
 *
 * Dotted quads take no leading zeros (`010.0.0.1` is refused, as netip does): some parsers read
 * them as octal, and an address that means two things is refused rather than guessed.
 *
 * Two layers. The `...OrReason` parsers return the reason text is not an address instead of
 * throwing; the field-checked parsers (parseIPv6, parseAddrPort, parseInterfaceAddress,
 * parseNetworkPrefix) throw a SideroLinkError whose message starts with the field the text came
 * from (`node_address_prefix`, `--address`, `x-siderolink-ipv6-addr`), so a person knows what
 * to fix.
 *
 * A prefix has two readings, and each has its own parser:
 *   - an interface address, `fd00::5/64`: the address of one host and the length of its
 *     network's prefix. The host bits are the point; parseInterfaceAddress keeps them.
 *   - a network prefix, `fd00::/64`: a set of addresses, as in routes and WireGuard AllowedIPs.
 *     Host bits mean nothing there; parseNetworkPrefix clears them.
 */
import { SideroLinkError } from "../siderolink/errors.ts";

export const IPV4_SIZE = 4;
export const IPV6_SIZE = 16;

const GROUPS = 8;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const OCTET = /^(0|[1-9]\d{0,2})$/;
const PREFIX_LENGTH = /^\d{1,3}$/;
const DECIMAL_PORT = /^\d{1,5}$/;

/** 4 bytes for a dotted quad, else the reason it is not one. */
export function parseIPv4OrReason(text: string): Uint8Array | string {
  const quad = DOTTED_QUAD.exec(text);
  if (quad === null) return `${JSON.stringify(text)} is not a dotted quad`;
  const bytes = new Uint8Array(IPV4_SIZE);
  for (let i = 0; i < IPV4_SIZE; i++) {
    const octet = quad[i + 1];
    if (!OCTET.test(octet) || Number(octet) > 255) return `${text} is not an IPv4 address`;
    bytes[i] = Number(octet);
  }
  return bytes;
}

/** 16 bytes for IPv6 text, else the reason it is not IPv6. Zones (`%eth0`) are refused. */
export function parseIPv6OrReason(text: string): Uint8Array | string {
  if (text.includes("%")) return "zones are not supported";
  const halves = text.split("::");
  if (halves.length > 2) return "'::' may appear only once";
  const head = parseGroups(halves[0], halves.length === 1);
  if (typeof head === "string") return head;
  const tail = halves.length === 2 ? parseGroups(halves[1], true) : [];
  if (typeof tail === "string") return tail;
  const count = head.length + tail.length;
  if (halves.length === 1 && count !== GROUPS) return `${count} groups instead of 8`;
  if (halves.length === 2 && count > GROUPS - 1) return "'::' must stand for at least one group";
  const bytes = new Uint8Array(IPV6_SIZE);
  for (let i = 0; i < head.length; i++) writeGroup(bytes, i, head[i]);
  for (let i = 0; i < tail.length; i++) writeGroup(bytes, GROUPS - tail.length + i, tail[i]);
  return bytes;
}

/** A dotted quad (4 bytes) or IPv6 text (16 bytes); undefined when it is neither. */
export function parseIP(text: string): Uint8Array | undefined {
  const parsed = text.includes(":") ? parseIPv6OrReason(text) : parseIPv4OrReason(text);
  return typeof parsed === "string" ? undefined : parsed;
}

/** 4 bytes as a dotted quad, 16 bytes as RFC 5952 text. */
export function formatIP(bytes: Uint8Array): string {
  if (bytes.length === IPV4_SIZE) return bytes.join(".");
  return formatIPv6(bytes);
}

/**
 * 16 bytes as RFC 5952 canonical text: lower-case hex without leading zeros, the longest run of
 * two or more zero groups (the first of equal runs) as `::`, and IPv4-mapped addresses as
 * `::ffff:a.b.c.d`.
 */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.length !== IPV6_SIZE) {
    throw new RangeError(`an IPv6 address is 16 bytes, got ${bytes.length}`);
  }
  if (isIPv4Mapped(bytes)) return `::ffff:${bytes.subarray(12).join(".")}`;
  const groups: number[] = [];
  for (let i = 0; i < GROUPS; i++) groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < GROUPS; ) {
    let end = i;
    while (end < GROUPS && groups[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end === i ? i + 1 : end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLength).join(":");
  return `${left}::${right}`;
}

/** `::ffff:a.b.c.d`: how a dual-stack socket names an IPv4 peer. */
export function isIPv4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== IPV6_SIZE) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** A copy of `address` with every bit after the first `bits` cleared. */
export function maskAddress(address: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(address.length);
  const whole = bits >>> 3;
  out.set(address.subarray(0, whole));
  if (bits & 7) out[whole] = address[whole] & (0xff << (8 - (bits & 7)));
  return out;
}

/**
 * Parses an IPv6 address in any RFC 4291 text form (`fd00::1`, `0:0:0:0:0:0:0:1`,
 * `::ffff:192.0.2.1`) into 16 bytes. Zones (`%eth0`) are refused: overlay addresses have none.
 */
export function parseIPv6(text: string, field = "address"): Uint8Array {
  const parsed = parseIPv6OrReason(text);
  if (typeof parsed !== "string") return parsed;
  throw new SideroLinkError(
    "invalid",
    field,
    `${JSON.stringify(text)} is not an IPv6 address (${parsed}); expected a form like fd00::1`,
  );
}

/** An IPv6 address and a port, as `[fd00::1]:50888`. */
export interface AddrPort {
  readonly address: Uint8Array;
  readonly port: number;
}

export function formatAddrPort(address: Uint8Array, port: number): string {
  return `[${formatIPv6(address)}]:${port}`;
}

/** Parses `[address]:port` with a port of 1-65535. */
export function parseAddrPort(text: string, field = "address"): AddrPort {
  const close = text.indexOf("]:");
  const portText = text.slice(close + 2);
  if (!text.startsWith("[") || close < 0 || !DECIMAL_PORT.test(portText)) {
    throw new SideroLinkError(
      "invalid",
      field,
      `${JSON.stringify(text)} is not an IPv6 address and port; expected [address]:port, like [fd00::1]:50888`,
    );
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) {
    throw new SideroLinkError("invalid", field, `port ${port} is outside 1-65535`);
  }
  return { address: parseIPv6(text.slice(1, close), field), port };
}

/**
 * An address (4 or 16 bytes) and a prefix length of 0-32 or 0-128 bits. Whether the bits after
 * the prefix mean anything depends on the reading (see the top of this file): an interface
 * address keeps them, a network prefix has them zero.
 */
export interface Prefix {
  readonly address: Uint8Array;
  readonly bits: number;
}

/** A prefix of `address` (copied, 4 or 16 bytes) and `bits`, host bits as given. */
export function prefixFrom(address: Uint8Array, bits: number): Prefix {
  if (address.length !== IPV4_SIZE && address.length !== IPV6_SIZE) {
    throw new RangeError(`expected 4 or 16 address bytes, got ${address.length}`);
  }
  const max = address.length * 8;
  if (!Number.isInteger(bits) || bits < 0 || bits > max) {
    throw new RangeError(`prefix length must be 0-${max}, got ${bits}`);
  }
  return { address: address.slice(), bits };
}

/**
 * Reads an interface address, IPv6 `address/length` like `fd00::5/64` (a node's
 * `node_address_prefix`, the server's `--address`), keeping the host bits: they name the host.
 */
export function parseInterfaceAddress(text: string, field = "address"): Prefix {
  const slash = text.indexOf("/");
  const bitsText = text.slice(slash + 1);
  if (slash < 0 || !PREFIX_LENGTH.test(bitsText) || Number(bitsText) > 128) {
    throw new SideroLinkError(
      "invalid",
      field,
      `${JSON.stringify(text)} is not an IPv6 address with a prefix length; expected address/length with length 0-128, like fd00::1/64`,
    );
  }
  return prefixFrom(parseIPv6(text.slice(0, slash), field), Number(bitsText));
}

/**
 * Reads a network prefix for routing and WireGuard AllowedIPs: `10.0.0.0/8`, `fd00::/64`, or a
 * bare address (a prefix of one host). Host bits are cleared, so `fd00::1/64` is `fd00::/64`.
 */
export function parseNetworkPrefix(text: string, field = "prefix"): Prefix {
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const address = parseIP(addressText);
  if (address === undefined) {
    throw new SideroLinkError(
      "invalid",
      field,
      `invalid IP address ${JSON.stringify(addressText)} in ${JSON.stringify(text)}; expected a prefix like 10.0.0.0/8 or fd00::/64`,
    );
  }
  const max = address.length * 8;
  const bitsText = slash < 0 ? String(max) : text.slice(slash + 1);
  const bits = Number(bitsText);
  if (!PREFIX_LENGTH.test(bitsText) || bits > max) {
    throw new SideroLinkError(
      "invalid",
      field,
      `invalid prefix length in ${JSON.stringify(text)}: expected 0-${max}`,
    );
  }
  return { address: maskAddress(address, bits), bits };
}

/** `address/bits`, the address as formatIP writes it. */
export function formatPrefix(prefix: Prefix): string {
  return `${formatIP(prefix.address)}/${prefix.bits}`;
}

/** The network a prefix names: the same length, every bit after it cleared. */
export function maskPrefix(prefix: Prefix): Prefix {
  return { address: maskAddress(prefix.address, prefix.bits), bits: prefix.bits };
}

/** Whether `address` is of the same family as `prefix` and shares its first `bits` bits. */
export function prefixContains(prefix: Prefix, address: Uint8Array): boolean {
  if (address.length !== prefix.address.length) return false;
  const whole = prefix.bits >> 3;
  for (let i = 0; i < whole; i++) if (address[i] !== prefix.address[i]) return false;
  const rest = prefix.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (address[whole] & mask) === (prefix.address[whole] & mask);
}

/** Parses the groups of one side of `::`; `last` marks the side that may end in a dotted quad. */
function parseGroups(text: string, last: boolean): number[] | string {
  if (text === "") return [];
  const pieces = text.split(":");
  const groups: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i];
    if (last && i === pieces.length - 1 && DOTTED_QUAD.test(piece)) {
      const v4 = parseIPv4OrReason(piece);
      if (typeof v4 === "string") return v4;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      continue;
    }
    if (!HEX_GROUP.test(piece)) return `${JSON.stringify(piece)} is not 1-4 hex digits`;
    groups.push(Number.parseInt(piece, 16));
  }
  return groups;
}

function writeGroup(bytes: Uint8Array, index: number, group: number): void {
  bytes[2 * index] = group >> 8;
  bytes[2 * index + 1] = group & 0xff;
}
