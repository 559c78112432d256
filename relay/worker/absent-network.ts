/**
 * The runtime of a network that does not exist, for the Worker to answer requests that name one
 * without waking a Durable Object (index.ts): the relay app then answers exactly as a network's
 * object would for its missing network (PermissionDenied, "peer not allowed", an unauthorized
 * uplink, 404), and nothing is stored anywhere.
 */
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { createNetworkRuntime, type NetworkRuntime } from "../app/runtime.ts";
import { NetworkNotFoundError, type NetworkStore } from "../store/store.ts";

export function absentNetworkRuntime(name: string): NetworkRuntime {
  return createNetworkRuntime({
    store: absentStore(name),
    acceptWebSocket(_request, admission) {
      // The routes admit no stream to a network that does not exist; close whatever comes.
      const { code, reason } =
        "refuse" in admission
          ? admission.refuse
          : { code: CloseCode.Unauthorized, reason: `network ${name} does not exist` };
      const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
      server.accept();
      server.close(code, reason);
      return new Response(null, { status: 101, webSocket: client });
    },
  });
}

/** Lookups find nothing; everything else rejects as for a network that does not exist. */
function absentStore(name: string): NetworkStore {
  const missing = (): Promise<never> => Promise.reject(new NetworkNotFoundError(name));
  return {
    name,
    network: async () => undefined,
    peerByVirtualAddress: async () => undefined,
    peerByUuid: async () => undefined,
    createNetwork: missing,
    setServerPublicKey: missing,
    pinServerPublicKey: missing,
    setUplinkSecretHash: missing,
    setRequireUniqueToken: missing,
    tokens: missing,
    addToken: missing,
    revokeToken: missing,
    peers: missing,
    peerCount: missing,
    peerCountByToken: missing,
    savePeer: missing,
    removePeer: missing,
    allowRebind: missing,
    recordTraffic: missing,
    revokeIdentity: missing,
    identityRevoked: async () => false,
    liftRevocations: missing,
    predefinedAddress: missing,
    setPredefinedAddress: missing,
  };
}
