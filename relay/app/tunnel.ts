/**
 * The two stream routes of a network (shared/siderolink/relay-api.ts): a node's tunnel, whose
 * peer address (a header) must be a provisioned peer of the network, and the management server's
 * uplink, which must present the network's uplink secret (uplink-secret.ts). Admission is the
 * same for every tunnel transport (WebSocket here, the HTTP-only tunnel in http-tunnel.ts). A
 * tunnel admitted here still has to prove it holds the node's key before it can take the address
 * from a live stream (hub ownership.ts).
 *
 * Refusals complete the upgrade and close at once with a code and reason (CloseCode in
 * shared/tunnel/frame.ts): WebSocket clients see those, not an HTTP status. Every refusal is
 * logged.
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
import type { Admission, NetworkRuntime, RelayDirectory } from "./runtime.ts";
import { bearerToken } from "./secrets.ts";
import { checkUplinkSecret, legacyUplinkWarning } from "./uplink-secret.ts";

/**
 * Every client of this route can set headers (the node sidecar, and gateways for Talos); a
 * browser's WebSocket API cannot, but no browser speaks this protocol. URLs end up in access
 * logs, so the address is accepted only as a header.
 */
export const REASON_ADDRESS_IN_QUERY = `peer not allowed: send ${PEER_ADDRESS_HEADER} as a header, not in the URL`;

export function registerTunnelRoutes(
  app: Hono,
  directory: RelayDirectory,
  now: () => number,
  maxTunnels: number,
): void {
  app.get(TUNNEL_ROUTE, async (c) => {
    const refused = notUpgrade(c);
    if (refused) return refused;
    const { runtime, admission } = await admitNodeStream(c, directory, now, maxTunnels);
    return runtime.acceptWebSocket(c.req.raw, admission);
  });

  app.get(UPLINK_ROUTE, async (c) => {
    const refused = notUpgrade(c);
    if (refused) return refused;
    const { runtime, admission } = await admitUplinkStream(c, directory, now);
    return runtime.acceptWebSocket(c.req.raw, admission);
  });
}

/** Who asks for a stream, and whether they may have it; the same for every tunnel transport. */
export interface StreamAdmission {
  readonly runtime: NetworkRuntime;
  readonly admission: Admission;
}

/**
 * A node stream for the route's network: its peer address header must name a provisioned peer
 * of the network, and the relay must have room for one more tunnel.
 */
export async function admitNodeStream(
  c: Context,
  directory: RelayDirectory,
  now: () => number,
  maxTunnels: number,
): Promise<StreamAdmission> {
  const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
  const value = c.req.header(PEER_ADDRESS_HEADER);
  if (value === undefined && c.req.query(PEER_ADDRESS_HEADER) !== undefined) {
    return refusal(runtime, "node", CloseCode.PeerNotAllowed, REASON_ADDRESS_IN_QUERY);
  }
  const virtualAddress = canonicalPeerAddress(value ?? "");
  const peer = virtualAddress && (await runtime.store.peerByVirtualAddress(virtualAddress));
  if (!peer) return refusal(runtime, "node", CloseCode.PeerNotAllowed, REASON_PEER_NOT_ALLOWED);
  if (!runtime.hub.hasNode(peer.virtualAddress) && tunnelsFull(directory, maxTunnels)) {
    return refusal(
      runtime,
      "node",
      CloseCode.TryAgainLater,
      `relay holds its limit of ${maxTunnels} tunnels; try again later`,
    );
  }
  return {
    runtime,
    admission: {
      attach: { v: 1, role: "node", virtualAddress: peer.virtualAddress, connectedAt: now() },
    },
  };
}

/** The management server's uplink: it must present the network's uplink secret. */
export async function admitUplinkStream(
  c: Context,
  directory: RelayDirectory,
  now: () => number,
): Promise<StreamAdmission> {
  const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
  const credential = checkUplinkSecret(
    runtime.name,
    await runtime.store.network(),
    bearerToken(c.req.header("authorization")),
  );
  if (!credential.accepted) {
    return refusal(runtime, "uplink", CloseCode.Unauthorized, credential.reason);
  }
  if (credential.legacyAdminSecret) {
    runtime.log({
      event: "uplink_admin_secret",
      network: runtime.name,
      warning: legacyUplinkWarning(runtime.name),
    });
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

function refusal(
  runtime: NetworkRuntime,
  role: "node" | "uplink",
  code: number,
  reason: string,
): StreamAdmission {
  runtime.log({ event: "stream_refused", network: runtime.name, role, code, reason });
  return { runtime, admission: { refuse: { code, reason } } };
}

function notUpgrade(c: Context): Response | undefined {
  if (c.req.header("upgrade")?.toLowerCase() === "websocket") return undefined;
  return c.json({ error: "this route takes a WebSocket upgrade (Upgrade: websocket)" }, 426);
}
