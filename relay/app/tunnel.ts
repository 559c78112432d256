/**
 * The two WebSocket routes of a network:
 *
 *   GET /v1/networks/:network/tunnel   a node's stream. The `x-siderolink-ipv6-addr` header (or
 *                                      query parameter of the same name, for clients that cannot
 *                                      set headers) carries the node's `grpc_peer_addr_port`;
 *                                      its address must be a provisioned peer of the network.
 *   GET /v1/networks/:network/uplink   the management server's uplink, with
 *                                      `Authorization: Bearer <admin secret>`.
 *
 * Refusals complete the upgrade and close at once with a code and reason (CloseCode in
 * shared/tunnel/frame.ts): WebSocket clients see those, not an HTTP status.
 */
import type { Context, Hono } from "hono";
import { formatIPv6, parseAddrPort, parseIPv6 } from "../../shared/siderolink/ipv6.ts";
import { CloseCode, REASON_PEER_NOT_ALLOWED } from "../../shared/tunnel/frame.ts";
import { hashSecret } from "../store/secret-hash.ts";
import { validateNetworkName } from "../store/store.ts";
import { CLOSE_TRY_AGAIN_LATER } from "./limits.ts";
import type { RelayDirectory } from "./runtime.ts";
import { bearerToken, constantTimeEqual } from "./secrets.ts";

export const PEER_ADDRESS_HEADER = "x-siderolink-ipv6-addr";

export function tunnelPath(network: string): string {
  return `/v1/networks/${network}/tunnel`;
}

export function uplinkPath(network: string): string {
  return `/v1/networks/${network}/uplink`;
}

export function registerTunnelRoutes(
  app: Hono,
  directory: RelayDirectory,
  now: () => number,
  maxTunnels: number,
): void {
  app.get("/v1/networks/:network/tunnel", async (c) => {
    const refused = notUpgrade(c);
    if (refused) return refused;
    const name = c.req.param("network");
    const runtime = await directory.runtime(validateNetworkName(name));
    const value = c.req.header(PEER_ADDRESS_HEADER) ?? c.req.query(PEER_ADDRESS_HEADER) ?? "";
    const virtualAddress = canonicalPeerAddress(value);
    const peer = virtualAddress && (await runtime.store.peerByVirtualAddress(virtualAddress));
    if (!peer) {
      return runtime.acceptWebSocket(c.req.raw, {
        refuse: { code: CloseCode.PeerNotAllowed, reason: REASON_PEER_NOT_ALLOWED },
      });
    }
    if (!runtime.hub.hasNode(peer.virtualAddress) && tunnelsFull(directory, maxTunnels)) {
      return runtime.acceptWebSocket(c.req.raw, {
        refuse: {
          code: CLOSE_TRY_AGAIN_LATER,
          reason: `relay holds its limit of ${maxTunnels} tunnels; try again later`,
        },
      });
    }
    return runtime.acceptWebSocket(c.req.raw, {
      attach: { v: 1, role: "node", virtualAddress: peer.virtualAddress, connectedAt: now() },
    });
  });

  app.get("/v1/networks/:network/uplink", async (c) => {
    const refused = notUpgrade(c);
    if (refused) return refused;
    const runtime = await directory.runtime(validateNetworkName(c.req.param("network")));
    const network = await runtime.store.network();
    const secret = bearerToken(c.req.header("authorization"));
    if (
      !network ||
      secret === undefined ||
      !constantTimeEqual(hashSecret(secret), network.adminSecretHash)
    ) {
      return runtime.acceptWebSocket(c.req.raw, {
        refuse: {
          code: CloseCode.Unauthorized,
          reason:
            "invalid admin secret for this network (shown once by siderolink-relay network create)",
        },
      });
    }
    return runtime.acceptWebSocket(c.req.raw, {
      attach: { v: 1, role: "uplink", serverPublicKey: null, connectedAt: now() },
    });
  });
}

/** Whether the directory's live hubs hold `maxTunnels` node streams or more. */
export function tunnelsFull(directory: RelayDirectory, maxTunnels: number): boolean {
  let open = 0;
  for (const runtime of directory.live()) open += runtime.hub.nodeCount;
  return open >= maxTunnels;
}

/** `[addr]:port` or a bare address, as canonical text; undefined when it is neither. */
export function canonicalPeerAddress(value: string): string | undefined {
  try {
    return formatIPv6(
      value.startsWith("[") ? parseAddrPort(value, PEER_ADDRESS_HEADER).address : parseIPv6(value),
    );
  } catch {
    return undefined;
  }
}

function notUpgrade(c: Context): Response | undefined {
  if (c.req.header("upgrade")?.toLowerCase() === "websocket") return undefined;
  return c.json({ error: "this route takes a WebSocket upgrade (Upgrade: websocket)" }, 426);
}
