import { readFileSync } from "node:fs";
import { formatIP, isIPv4Mapped, parseIP } from "../../shared/net/ip.ts";
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
      this.address = formatIP(addressBytes) + (scope === "" ? "" : `%${scope}`);
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
  if (address.length === 16 && isIPv4Mapped(address)) {
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
