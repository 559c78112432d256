import { readFileSync } from "node:fs";
import type { Endpoint } from "../../shared/wireguard/bind.ts";

/**
 * A UDP endpoint as `wg` writes it: `1.2.3.4:51820`, `[fd00::1]:51820`, `[fe80::1%eth0]:51820`.
 * IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports for IPv4
 * senders) are IPv4 endpoints, so a peer has one key whichever socket family saw it.
 */
export class UdpEndpoint implements Endpoint {
  readonly key: string;
  /** 4 bytes (IPv4) or 16 bytes (IPv6). */
  readonly addressBytes: Uint8Array;
  /** The address in dgram's notation, scope included ("fe80::1%eth0"). */
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** The address as a dual-stack socket takes it: 16 bytes, IPv4 as ::ffff:a.b.c.d. */
  readonly socketAddress: Uint8Array;
  /** IPv6 scope (interface index) for link-local addresses, else 0. */
  readonly scopeId: number;

  /** The endpoint of a socket address; mapped IPv4 becomes IPv4. */
  static fromSocketAddress(address: Uint8Array, port: number, scopeId: number): UdpEndpoint {
    return endpointFromAddress(address, port, scopeId === 0 ? "" : String(scopeId));
  }

  constructor(addressBytes: Uint8Array, port: number, scope = "") {
    if (addressBytes.length !== 4 && addressBytes.length !== 16) {
      throw new RangeError(`expected 4 or 16 address bytes, got ${addressBytes.length}`);
    }
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(`UDP port must be 0-65535, got ${port}`);
    }
    this.addressBytes = addressBytes;
    this.port = port;
    this.family = addressBytes.length === 4 ? 4 : 6;
    this.scopeId = scope === "" ? 0 : scopeIndex(scope);
    if (this.family === 4) {
      this.socketAddress = new Uint8Array(16);
      this.socketAddress[10] = 0xff;
      this.socketAddress[11] = 0xff;
      this.socketAddress.set(addressBytes, 12);
      this.address = addressBytes.join(".");
      this.key = `${this.address}:${port}`;
    } else {
      this.socketAddress = addressBytes;
      this.address = formatIPv6(addressBytes) + (scope === "" ? "" : `%${scope}`);
      this.key = `[${this.address}]:${port}`;
    }
  }

  toString(): string {
    return this.key;
  }
}

/** Parses `wg`'s endpoint notation; throws with the offending text when it is not one. */
export function parseUdpEndpoint(text: string): UdpEndpoint {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") throw badEndpoint(text);
    host = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) throw badEndpoint(text);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw badEndpoint(text);
  const port = Number(portText);
  const percent = host.indexOf("%");
  const scope = percent < 0 ? "" : host.slice(percent + 1);
  const address = parseIP(percent < 0 ? host : host.slice(0, percent));
  if (address === undefined || (scope !== "" && address.length !== 16)) throw badEndpoint(text);
  return endpointFromAddress(address, port, scope);
}

/** The endpoint for an address as dgram reports it; mapped IPv4 becomes IPv4. */
export function endpointFromAddress(address: Uint8Array, port: number, scope = ""): UdpEndpoint {
  if (address.length === 16 && isMappedIPv4(address)) {
    return new UdpEndpoint(address.slice(12), port);
  }
  return new UdpEndpoint(address, port, scope);
}

/** An IPv6 scope as an interface index: a number, or an interface name looked up in sysfs. */
function scopeIndex(scope: string): number {
  if (/^\d+$/.test(scope)) return Number(scope);
  try {
    return Number(readFileSync(`/sys/class/net/${scope}/ifindex`, "utf8"));
  } catch {
    throw new Error(
      `unknown interface "${scope}" in IPv6 scope: expected an interface name or index`,
    );
  }
}

function badEndpoint(text: string): Error {
  return new Error(
    `invalid endpoint "${text}": expected IPv4:port (192.0.2.1:51820) or [IPv6]:port ([fd00::1]:51820)`,
  );
}

function isMappedIPv4(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** Parses a dotted IPv4 or an IPv6 address (RFC 4291 text forms) to its bytes. */
export function parseIP(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIPv6(text) : parseIPv4(text);
}

function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(0|[1-9]\d{0,2})$/.test(parts[i]) || Number(parts[i]) > 255) return undefined;
    out[i] = Number(parts[i]);
  }
  return out;
}

function parseIPv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIPv4(part);
        if (v4 === undefined) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
        out.push(Number.parseInt(part, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i] >> 8;
    out[2 * i + 1] = all[i] & 0xff;
  }
  return out;
}

/** RFC 5952 text: lower case, the longest run (of two or more) of zero groups as "::". */
export function formatIPv6(a: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((a[i] << 8) | a[i + 1]);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}
