/**
 * The two WebSocket routes of a network (shared/siderolink/relay-api.ts): a node's tunnel, whose
 * peer address must be a provisioned peer of the network, and the management server's uplink,
 * which must present the network's admin secret.
 *
 * Refusals complete the upgrade and close at once with a code and reason (CloseCode in
 * shared/tunnel/frame.ts): WebSocket clients see those, not an HTTP status.
 */
import type { Context, Hono } from "hono";
import {
  canonicalPeerAddress,
  PEER_ADDRESS_HEADER,
  TUNNEL_ROUTE,
  UPLINK_ROUTE,
  validateNetworkName,
} from "../../shared/siderolink/relay-api.ts";
import { CloseCode, REASON_PEER_NOT_ALLOWED } from "../../shared/tunnel/frame.ts";
import { CLOSE_TRY_AGAIN_LATER } from "./limits.ts";
import type { Admission, NetworkRuntime, RelayDirectory } from "./runtime.ts";
import { bearerToken, constantTimeEqual } from "./secrets.ts";

export function registerTunnelRoutes(
  app: Hono,
  directory: RelayDirectory,
  now: () => number,
  maxTunnels: number,
): void {
  app.get(TUNNEL_ROUTE, async (c) => {
    const refused = notUpgrade(c);
    if (refused) return refused;
    const { runtime, admission } = await admitNode(c, directory, now, maxTunnels);
    return runtime.acceptWebSocket(c.req.raw, admission);
  });

  app.get(UPLINK_ROUTE, async (c) => {
    const refused = notUpgrade(c);
    if (refused) return refused;
    const { runtime, admission } = await admitUplink(c, directory, now);
    return runtime.acceptWebSocket(c.req.raw, admission);
  });
}

/** Who asks for a stream, and whether they may have it; the same for every tunnel transport. */
export interface StreamAdmission {
  readonly runtime: NetworkRuntime;
  readonly admission: Admission;
}

/**
 * A node stream for the route's network: its peer address (header or query parameter) must be a
 * provisioned peer of the network, and the relay must have room for one more tunnel.
 */
export async function admitNode(
  c: Context,
  directory: RelayDirectory,
  now: () => number,
  maxTunnels: number,
): Promise<StreamAdmission> {
  const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
  const value = c.req.header(PEER_ADDRESS_HEADER) ?? c.req.query(PEER_ADDRESS_HEADER) ?? "";
  const virtualAddress = canonicalPeerAddress(value);
  const peer = virtualAddress && (await runtime.store.peerByVirtualAddress(virtualAddress));
  if (!peer) {
    return {
      runtime,
      admission: { refuse: { code: CloseCode.PeerNotAllowed, reason: REASON_PEER_NOT_ALLOWED } },
    };
  }
  if (!runtime.hub.hasNode(peer.virtualAddress) && tunnelsFull(directory, maxTunnels)) {
    return {
      runtime,
      admission: {
        refuse: {
          code: CLOSE_TRY_AGAIN_LATER,
          reason: `relay holds its limit of ${maxTunnels} tunnels; try again later`,
        },
      },
    };
  }
  return {
    runtime,
    admission: {
      attach: { v: 1, role: "node", virtualAddress: peer.virtualAddress, connectedAt: now() },
    },
  };
}

/** The management server's uplink: it must present the network's admin secret. */
export async function admitUplink(
  c: Context,
  directory: RelayDirectory,
  now: () => number,
): Promise<StreamAdmission> {
  const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
  const network = await runtime.store.network();
  const secret = bearerToken(c.req.header("authorization"));
  if (!network || secret === undefined || !constantTimeEqual(secret, network.adminSecret)) {
    return {
      runtime,
      admission: {
        refuse: {
          code: CloseCode.Unauthorized,
          reason: "invalid admin secret for this network (see siderolink-relay network show)",
        },
      },
    };
  }
  return {
    runtime,
    admission: { attach: { v: 1, role: "uplink", serverPublicKey: null, connectedAt: now() } },
  };
}

/** Whether the directory's live hubs hold `maxTunnels` node streams or more. */
export function tunnelsFull(directory: RelayDirectory, maxTunnels: number): boolean {
  let open = 0;
  for (const runtime of directory.live()) open += runtime.hub.nodeCount;
  return open >= maxTunnels;
}

function notUpgrade(c: Context): Response | undefined {
  if (c.req.header("upgrade")?.toLowerCase() === "websocket") return undefined;
  return c.json({ error: "this route takes a WebSocket upgrade (Upgrade: websocket)" }, 426);
}
