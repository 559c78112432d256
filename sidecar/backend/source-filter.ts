/**
 * Point to point on the server's interface, for the userspace backend. The server terminates
 * every node's tunnel, so a node that routes `::/0` (or another node's address) through its
 * link hands the server packets for other nodes; a management host that forwards IPv6 (common on
 * Kubernetes and Docker hosts) would send them back out of the same interface, and the device
 * would encrypt them to the other node. Only packets the server itself sends may leave: a packet
 * read from the TUN whose IPv6 source is not the server address is dropped and counted.
 */
import type { Tun, TunReadHandler } from "../../shared/wireguard/tun.ts";

/** IPv6 header: version in the top nibble of byte 0, source address at bytes 8-23. */
const IPV6_VERSION = 6;
const IPV6_SOURCE_OFFSET = 8;
const IPV6_ADDRESS_BYTES = 16;

export interface SourceFilteredTun extends Tun {
  /** Packets dropped because they did not come from the server address. */
  readonly notFromServer: number;
}

/** Wraps `tun` so that the device only reads packets whose IPv6 source is `source`. */
export function filterTunSource(tun: Tun, source: Uint8Array): SourceFilteredTun {
  if (source.length !== IPV6_ADDRESS_BYTES)
    throw new RangeError(`expected a 16-byte IPv6 source address, got ${source.length} bytes`);
  const kept: Uint8Array[] = [];
  let dropped = 0;
  const fromSource = (packet: Uint8Array): boolean => {
    if (packet.length < IPV6_SOURCE_OFFSET + IPV6_ADDRESS_BYTES) return false;
    if (packet[0] >> 4 !== IPV6_VERSION) return false;
    for (let i = 0; i < IPV6_ADDRESS_BYTES; i++)
      if (packet[IPV6_SOURCE_OFFSET + i] !== source[i]) return false;
    return true;
  };
  return {
    get name() {
      return tun.name;
    },
    get mtu() {
      return tun.mtu;
    },
    get closed() {
      return tun.closed;
    },
    get notFromServer() {
      return dropped;
    },
    start(handler: TunReadHandler) {
      tun.start((packets) => {
        kept.length = 0;
        for (const packet of packets) {
          if (fromSource(packet)) kept.push(packet);
          else dropped++;
        }
        if (kept.length > 0) handler(kept);
        kept.length = 0;
      });
    },
    write: (packets) => tun.write(packets),
    close: () => tun.close(),
  };
}
