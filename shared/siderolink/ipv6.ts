import { SideroLinkError } from "./errors.ts";

/** An IPv6 address is 16 bytes, most significant first. */
export const IPV6_SIZE = 16;

const GROUPS = 8;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const DECIMAL_PORT = /^\d{1,5}$/;

/**
 * Parses an IPv6 address in any RFC 4291 text form (`fd00::1`, `0:0:0:0:0:0:0:1`,
 * `::ffff:192.0.2.1`) into 16 bytes. Zones (`%eth0`) are refused: overlay addresses have none.
 */
export function parseIPv6(text: string, field = "address"): Uint8Array {
  const fail = (why: string): never => {
    throw new SideroLinkError(
      "invalid",
      field,
      `${JSON.stringify(text)} is not an IPv6 address (${why}); expected a form like fd00::1`,
    );
  };
  if (text.includes("%")) fail("zones are not supported");
  const halves = text.split("::");
  if (halves.length > 2) fail("'::' may appear only once");
  const head = parseGroups(halves[0], halves.length === 1, fail);
  const tail = halves.length === 2 ? parseGroups(halves[1], true, fail) : [];
  const count = head.length + tail.length;
  if (halves.length === 1 && count !== GROUPS) fail(`${count} groups instead of 8`);
  if (halves.length === 2 && count > GROUPS - 1) fail("'::' must stand for at least one group");
  const bytes = new Uint8Array(IPV6_SIZE);
  for (let i = 0; i < head.length; i++) writeGroup(bytes, i, head[i]);
  for (let i = 0; i < tail.length; i++) writeGroup(bytes, GROUPS - tail.length + i, tail[i]);
  return bytes;
}

/**
 * Formats 16 bytes as RFC 5952 canonical text: lower-case hex without leading zeros, the longest
 * run of two or more zero groups (the first of equal runs) as `::`, and IPv4-mapped addresses
 * as `::ffff:a.b.c.d`.
 */
export function formatIPv6(bytes: Uint8Array): string {
  checkSize(bytes);
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

/** An address with a prefix length, as `fd00::1/64`. The address keeps its host bits. */
export interface Prefix {
  readonly address: Uint8Array;
  readonly bits: number;
  /** Whether `address` shares this prefix's first `bits` bits. */
  contains(address: Uint8Array): boolean;
  /** The same prefix with every bit after `bits` cleared. */
  masked(): Prefix;
  toString(): string;
}

/** Builds a prefix from 16 bytes (copied) and a length of 0-128 bits. */
export function prefixFrom(address: Uint8Array, bits: number): Prefix {
  checkSize(address);
  if (!Number.isInteger(bits) || bits < 0 || bits > 128) {
    throw new RangeError(`IPv6 prefix length must be 0-128, got ${bits}`);
  }
  return new IPv6Prefix(address.slice(), bits);
}

/** Parses `address/bits`, keeping the address's host bits (a node's address with its /64). */
export function parsePrefix(text: string, field = "prefix"): Prefix {
  const slash = text.indexOf("/");
  const bitsText = text.slice(slash + 1);
  if (slash < 0 || !/^\d{1,3}$/.test(bitsText) || Number(bitsText) > 128) {
    throw new SideroLinkError(
      "invalid",
      field,
      `${JSON.stringify(text)} is not an IPv6 prefix; expected address/length with length 0-128, like fd00::1/64`,
    );
  }
  return prefixFrom(parseIPv6(text.slice(0, slash), field), Number(bitsText));
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

class IPv6Prefix implements Prefix {
  readonly address: Uint8Array;
  readonly bits: number;

  constructor(address: Uint8Array, bits: number) {
    this.address = address;
    this.bits = bits;
  }

  contains(address: Uint8Array): boolean {
    if (address.length !== IPV6_SIZE) return false;
    const whole = this.bits >> 3;
    for (let i = 0; i < whole; i++) if (address[i] !== this.address[i]) return false;
    const rest = this.bits & 7;
    if (rest === 0) return true;
    const mask = (0xff << (8 - rest)) & 0xff;
    return (address[whole] & mask) === (this.address[whole] & mask);
  }

  masked(): Prefix {
    const bytes = this.address.slice();
    for (let bit = this.bits; bit < 128; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
    return new IPv6Prefix(bytes, this.bits);
  }

  toString(): string {
    return `${formatIPv6(this.address)}/${this.bits}`;
  }
}

/** Parses the groups of one side of `::`; `last` marks the side that may end in a dotted quad. */
function parseGroups(text: string, last: boolean, fail: (why: string) => never): number[] {
  if (text === "") return [];
  const pieces = text.split(":");
  const groups: number[] = [];
  pieces.forEach((piece, i) => {
    const quad = DOTTED_QUAD.exec(piece);
    if (quad && last && i === pieces.length - 1) {
      const octets = quad.slice(1).map(Number);
      if (octets.some((octet) => octet > 255)) fail(`${piece} is not an IPv4 address`);
      groups.push((octets[0] << 8) | octets[1], (octets[2] << 8) | octets[3]);
      return;
    }
    if (!HEX_GROUP.test(piece)) fail(`${JSON.stringify(piece)} is not 1-4 hex digits`);
    groups.push(Number.parseInt(piece, 16));
  });
  return groups;
}

function writeGroup(bytes: Uint8Array, index: number, group: number): void {
  bytes[2 * index] = group >> 8;
  bytes[2 * index + 1] = group & 0xff;
}

function isIPv4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

function checkSize(bytes: Uint8Array): void {
  if (bytes.length !== IPV6_SIZE) {
    throw new RangeError(`an IPv6 address is 16 bytes, got ${bytes.length}`);
  }
}
