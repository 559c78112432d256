/**
 * The relay's abuse limits in one place, with the defaults a runtime gets unless it passes its
 * own. Per-stream datagram limits live with the hub (HubLimits in relay/hub/hub.ts).
 */
import { createContextKey } from "@connectrpc/connect";
import type { RateLimit } from "./rate-limit.ts";

export interface RelayLimits {
  /**
   * Provision calls with a valid join token one client (an IPv4 address, an IPv6 /64) may make.
   * Talos provisions at boot and then again about every 30 s for as long as its WireGuard
   * handshake with the server is missing; a burst covers a rack booting behind one NAT address.
   */
  readonly provisionPerClient: RateLimit;
  /**
   * Refused Provision calls (wrong join token, invalid request) one client may make. A bucket of
   * its own, so a stranger's guesses from the same address (a NAT, a proxy, a /64) cannot spend
   * what real nodes there need.
   */
  readonly provisionFailuresPerClient: RateLimit;
  /** Provision calls (with a valid join token) one network takes, whatever the address. */
  readonly provisionPerNetwork: RateLimit;
  /** Peers one network may hold: the uplink's peer list and WireGuard's peer table stay sane. */
  readonly maxPeersPerNetwork: number;
  /**
   * Node tunnel streams open at once in one relay process (on Workers: in one network's Durable
   * Object). A node that already has a stream may always replace it.
   */
  readonly maxTunnels: number;
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  provisionPerClient: { burst: 30, perSecond: 2 },
  provisionFailuresPerClient: { burst: 10, perSecond: 0.5 },
  provisionPerNetwork: { burst: 300, perSecond: 50 },
  maxPeersPerNetwork: 10_000,
  maxTunnels: 20_000,
};

/**
 * Where a Provision call came from, set by the runtime: the TCP peer or the edge's header.
 * Undefined where the runtime cannot tell (workerd run locally, without Cloudflare's edge): such
 * calls skip the per-client limit rather than share one bucket that any caller could drain.
 */
export const clientAddressKey = createContextKey<string | undefined>(undefined, {
  description: "client address",
});
