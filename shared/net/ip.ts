/**
 * IP addresses as bytes and text, for every part of the project: 4 bytes for IPv4, 16 for IPv6,
 * most significant first. Text is read in the RFC 4291 forms (`fd00::1`, `0:0:0:0:0:0:0:1`,
 * `::ffff:192.0.2.1`) and dotted quads, and written as Go's netip writes it: dotted quads, and
 * RFC 5952 canonical IPv6 with IPv4-mapped addresses as `::ffff:a.b.c.d`.
 *
 * Dotted quads take no leading zeros (`010.0.0.1` is refused, as netip does): some parsers read
 * them as octal, and an address that means two things is refused rather than guessed.
 *
 * The parsers return the reason text is not an address instead of throwing, so each caller
 * raises its own error naming its own field.
 */

export const IPV4_SIZE = 4;
export const IPV6_SIZE = 16;

const GROUPS = 8;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const OCTET = /^(0|[1-9]\d{0,2})$/;

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
  return formatIPv6Bytes(bytes);
}

/**
 * 16 bytes as RFC 5952 canonical text: lower-case hex without leading zeros, the longest run of
 * two or more zero groups (the first of equal runs) as `::`, and IPv4-mapped addresses as
 * `::ffff:a.b.c.d`.
 */
export function formatIPv6Bytes(bytes: Uint8Array): string {
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
