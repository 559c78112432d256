/**
 * The mesh member's WireGuard bind: one UDP socket for direct paths and the relay link for the
 * rest. A peer's endpoint is either a UDP endpoint (direct) or its RelayEndpoint (relayed), and
 * WireGuard's roaming does the switching: a peer's endpoint becomes wherever its last
 * authenticated packet came from.
 *
 * Probing: a handshake initiation sent to a RelayEndpoint is also sent straight to each of that
 * peer's candidate UDP endpoints. Where one of them works, the copy arrives first (no relay hop),
 * the peer answers it over UDP, and both ends roam to the direct path; the copy through the
 * relay then carries a stale timestamp and is refused. Where none works, the relay copy
 * completes the handshake. So every handshake of a relayed peer is also a sweep of its direct
 * candidates, all at once.
 *
 * RelayEndpoints show in `wg show` as `[100::<first 8 bytes of the member id>]:1`: 100::/64 is
 * the discard-only prefix (RFC 6666), so the address can never be a real UDP destination.
 */
import { formatIPv6 } from "../../shared/net/ip.ts";
import type { Bind, BindReceiveHandler, Endpoint } from "../../shared/wireguard/bind.ts";
import { MESSAGE_INITIATION_SIZE, MessageType } from "../../shared/wireguard/constants.ts";
import { parseUdpEndpoint, type UdpEndpoint } from "../bind/endpoint.ts";
import type { UdpBind } from "../bind/udp.ts";
import type { RelayLink } from "./relay-link.ts";

export const RELAY_ENDPOINT_PORT = 1;

export class RelayEndpoint implements Endpoint {
  readonly key: string;
  /** The discard-prefix address: what cookies and rate limits see as this peer's source. */
  readonly addressBytes: Uint8Array;
  readonly member: Uint8Array;

  constructor(member: Uint8Array) {
    this.member = member.slice();
    this.addressBytes = new Uint8Array(16);
    this.addressBytes[0] = 0x01;
    this.addressBytes.set(member.subarray(0, 8), 8);
    this.key = `[${formatIPv6(this.addressBytes)}]:${RELAY_ENDPOINT_PORT}`;
  }

  toString(): string {
    return this.key;
  }
}

/** A member id (32 bytes) as a short map key: 16 UTF-16 units, cheap to make per datagram. */
export function memberKey(member: Uint8Array): string {
  let key = "";
  for (let i = 0; i < 32; i += 2) key += String.fromCharCode((member[i] << 8) | member[i + 1]);
  return key;
}

export interface DualBind extends Bind {
  /** The relay endpoint of a member (one object per member id). */
  relayEndpoint(member: Uint8Array): RelayEndpoint;
  /** Sets the direct candidates a relayed member's initiations are copied to. */
  setCandidates(member: Uint8Array, candidates: readonly UdpEndpoint[]): void;
  forget(member: Uint8Array): void;
  /** Hands a datagram from the relay link to the device. */
  deliverRelayed(member: Uint8Array, datagram: Uint8Array): void;
  readonly probes: number;
}

export function createDualBind(udp: UdpBind, relay: () => RelayLink | undefined): DualBind {
  let handler: BindReceiveHandler | null = null;
  const relayEndpoints = new Map<string, RelayEndpoint>();
  const candidates = new Map<string, readonly UdpEndpoint[]>();
  const one: Uint8Array[] = [];
  let probes = 0;

  const bind: DualBind = {
    get port() {
      return udp.port;
    },
    get probes() {
      return probes;
    },
    async open(receive) {
      handler = receive;
      await udp.open(receive);
    },
    send(datagrams, to) {
      if (!(to instanceof RelayEndpoint)) {
        udp.send(datagrams, to);
        return;
      }
      const link = relay();
      const direct = candidates.get(memberKey(to.member));
      for (const datagram of datagrams) {
        link?.send(to.member, datagram);
        if (
          direct !== undefined &&
          datagram[0] === MessageType.Initiation &&
          datagram.length === MESSAGE_INITIATION_SIZE
        ) {
          one[0] = datagram;
          for (const candidate of direct) udp.send(one, candidate);
          probes++;
        }
      }
    },
    parseEndpoint(text) {
      for (const endpoint of relayEndpoints.values()) if (endpoint.key === text) return endpoint;
      return parseUdpEndpoint(text);
    },
    relayEndpoint(member) {
      const key = memberKey(member);
      let endpoint = relayEndpoints.get(key);
      if (endpoint === undefined) {
        endpoint = new RelayEndpoint(member);
        relayEndpoints.set(key, endpoint);
      }
      return endpoint;
    },
    setCandidates(member, list) {
      candidates.set(memberKey(member), list);
    },
    forget(member) {
      const key = memberKey(member);
      relayEndpoints.delete(key);
      candidates.delete(key);
    },
    deliverRelayed(member, datagram) {
      const endpoint = relayEndpoints.get(memberKey(member));
      // A member this node has no record of: nothing to hand the datagram to.
      if (endpoint === undefined || handler === null) return;
      one[0] = datagram;
      handler(one, endpoint);
    },
    async close() {
      handler = null;
      await udp.close();
    },
  };
  return bind;
}
