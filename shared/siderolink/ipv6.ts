import { formatIPv6Bytes, IPV6_SIZE, maskAddress, parseIPv6OrReason } from "../net/ip.ts";
import { SideroLinkError } from "./errors.ts";

export { IPV6_SIZE };

const DECIMAL_PORT = /^\d{1,5}$/;

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

/** 16 bytes as RFC 5952 canonical text (IPv4-mapped as `::ffff:a.b.c.d`). */
export function formatIPv6(bytes: Uint8Array): string {
  return formatIPv6Bytes(bytes);
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
    return new IPv6Prefix(maskAddress(this.address, this.bits), this.bits);
  }

  toString(): string {
    return `${formatIPv6(this.address)}/${this.bits}`;
  }
}

function checkSize(bytes: Uint8Array): void {
  if (bytes.length !== IPV6_SIZE) {
    throw new RangeError(`an IPv6 address is 16 bytes, got ${bytes.length}`);
  }
}
