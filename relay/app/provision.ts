/**
 * `sidero.link.ProvisionService/Provision`: a node presents a join token and its WireGuard key
 * and learns the server's key, its own address and the virtual endpoint it tunnels to. The
 * relay always tunnels (an edge cannot take UDP), so `grpc_peer_addr_port` is always set.
 * Served by Connect's router on every runtime (Connect and gRPC-web; plain gRPC on Node).
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { formatAddrPort, formatIPv6, parseIPv6 } from "../../shared/net/ip.ts";
import {
  networkPrefix,
  randomNodeAddress,
  serverAddress,
  VIRTUAL_PEER_PORT,
  virtualNetworkPrefix,
} from "../../shared/siderolink/addressing.ts";
import { endpointsToWire } from "../../shared/siderolink/endpoints.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import { parseKey } from "../../shared/siderolink/keys.ts";
import { isNetworkName, parseJoinToken, REVOKED_NODE } from "../../shared/siderolink/relay-api.ts";
import { type AckResult, NoUplinkError } from "../hub/hub.ts";
import { hashSecret } from "../store/secret-hash.ts";
import {
  type JoinTokenRecord,
  type PeerRecord,
  StoreConflictError,
  StoreUnavailableError,
} from "../store/store.ts";
import { clientKey } from "./client-address.ts";
import { clientAddressKey, DEFAULT_RELAY_LIMITS, type RelayLimits } from "./limits.ts";
import { createRateLimiter, type RateLimiter } from "./rate-limit.ts";
import type { NetworkRuntime, RelayDirectory } from "./runtime.ts";
import { peerEntry } from "./runtime.ts";
import { constantTimeEqual } from "./secrets.ts";

/** Provisions by result, keyed by gRPC code name in snake case ("ok", "permission_denied"). */
export type ProvisionCounts = Record<string, number>;

export interface ProvisionHandler {
  readonly impl: ServiceImpl<typeof ProvisionService>;
  readonly counts: ProvisionCounts;
}

const INVALID_JOIN_TOKEN = "invalid join token";
/** Longest node_uuid, node_unique_token and talos_version, in UTF-8 bytes. */
export const MAX_FIELD_BYTES = 256;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ADDRESS_ATTEMPTS = 4;
/** Response header (gRPC: trailer) with the seconds to wait after ResourceExhausted. */
export const RETRY_AFTER_HEADER = "retry-after";

interface ProvisionLimiters {
  readonly limits: RelayLimits;
  readonly perClient: RateLimiter;
  readonly failuresPerClient: RateLimiter;
  readonly perNetwork: RateLimiter;
}

/** Refusals that are the caller's doing, which spend its failure budget. */
const CLIENT_FAULTS: ReadonlySet<Code> = new Set([Code.PermissionDenied, Code.InvalidArgument]);

/** One Provision call's outcome, for logs and counters that outlive the handler. */
export interface ProvisionOutcome {
  /** "ok" or the gRPC code name in snake case. */
  readonly result: string;
  readonly request: ProvisionArgs;
  /** The client address as the runtime saw it. */
  readonly client: string | undefined;
  readonly response?: { readonly grpcPeerAddrPort: string };
  /** Why it was refused. */
  readonly reason?: string;
}

export type ProvisionObserver = (outcome: ProvisionOutcome) => void;

export function createProvisionHandler(
  directory: RelayDirectory,
  now: () => number = Date.now,
  limits: RelayLimits = DEFAULT_RELAY_LIMITS,
  observe: ProvisionObserver = () => {},
): ProvisionHandler {
  const counts: ProvisionCounts = {};
  const limiters: ProvisionLimiters = {
    limits,
    perClient: createRateLimiter(limits.provisionPerClient),
    failuresPerClient: createRateLimiter(limits.provisionFailuresPerClient),
    perNetwork: createRateLimiter(limits.provisionPerNetwork),
  };
  const count = (code: Code | "ok") => {
    const name = code === "ok" ? "ok" : codeName(code);
    counts[name] = (counts[name] ?? 0) + 1;
    return name;
  };

  return {
    counts,
    impl: {
      async provision(request, context) {
        const address = context.values.get(clientAddressKey);
        const client = address === undefined ? undefined : clientKey(address);
        try {
          const response = await provision(directory, request, now(), client, limiters);
          observe({ result: count("ok"), request, client: address, response });
          return response;
        } catch (error) {
          let connectError = ConnectError.from(error);
          // A refusal spends the caller's failure budget, never the budget valid calls from
          // the same client draw on; past it, refusals come back as ResourceExhausted.
          if (client !== undefined && CLIENT_FAULTS.has(connectError.code)) {
            const retryMs = limiters.failuresPerClient.take(client, now());
            if (retryMs > 0) {
              connectError = rateLimitError(
                retryMs,
                `refused Provision calls from client ${client}`,
              );
            }
          }
          observe({
            result: count(connectError.code),
            request,
            client: address,
            reason: connectError.rawMessage,
          });
          throw connectError;
        }
      },
    },
  };
}

export type ProvisionArgs = Parameters<ServiceImpl<typeof ProvisionService>["provision"]>[0];

async function provision(
  directory: RelayDirectory,
  request: ProvisionArgs,
  now: number,
  client: string | undefined,
  limiters: ProvisionLimiters,
) {
  const token = parseJoinToken(request.joinToken ?? "");
  if (!token || !isNetworkName(token.network)) throw permissionDenied();
  const runtime = await directory.runtime(token.network);
  try {
    return await provisionPeer(runtime, request, now, token.secret, client, limiters);
  } catch (error) {
    if (error instanceof StoreUnavailableError)
      throw new ConnectError(error.message, Code.Unavailable);
    throw error;
  }
}

async function provisionPeer(
  runtime: NetworkRuntime,
  request: ProvisionArgs,
  now: number,
  secret: string,
  client: string | undefined,
  limiters: ProvisionLimiters,
) {
  const network = await runtime.store.network();
  if (!network) throw permissionDenied();
  // Compare against every active token, without stopping early, so timing reveals nothing.
  let joinToken: JoinTokenRecord | undefined;
  const presented = hashSecret(secret);
  for (const candidate of await runtime.store.tokens()) {
    if (candidate.revokedAt === null && constantTimeEqual(candidate.secretHash, presented))
      joinToken = candidate;
  }
  if (!joinToken) throw permissionDenied();
  // After the token check, so strangers cannot spend a client's or a network's budget.
  if (client !== undefined) rateLimited(limiters.perClient.take(client, now), `client ${client}`);
  rateLimited(limiters.perNetwork.take(network.name, now), `network ${network.name}`);

  const { nodeUuid, uniqueToken, talosVersion } = checkIdentityFields(request);
  let publicKey: string;
  try {
    parseKey(request.nodePublicKey, "node_public_key");
    publicKey = request.nodePublicKey;
  } catch (error) {
    if (error instanceof SideroLinkError)
      throw new ConnectError(error.message, Code.InvalidArgument);
    throw error;
  }
  if (uniqueToken === "" && network.requireUniqueToken) {
    throw new ConnectError(
      `network ${JSON.stringify(network.name)} requires node_unique_token, and the node sent none; use a Talos version that sends one (or siderolink-sidecar, which always does), or turn the requirement off (siderolink-relay network require-unique-token ${network.name} off)`,
      Code.PermissionDenied,
    );
  }
  if (await runtime.store.identityRevoked(nodeUuid, uniqueToken)) {
    throw new ConnectError(
      `node ${JSON.stringify(nodeUuid)} ${REVOKED_NODE}; to let it in again: siderolink-relay node admit ${network.name} ${nodeUuid || '""'}`,
      Code.PermissionDenied,
    );
  }
  const tooOld = talosTooOldToTunnel(talosVersion);
  if (tooOld) {
    throw new ConnectError(
      `Talos ${tooOld} cannot tunnel WireGuard over gRPC, and this relay only tunnels; upgrade the machine to Talos ${MIN_TUNNEL_TALOS} or newer`,
      Code.FailedPrecondition,
    );
  }
  if (!runtime.hub.hasUplink || network.serverPublicKey === null) {
    throw new ConnectError(
      `the management server is not connected to the relay for network ${JSON.stringify(network.name)}; ` +
        `start its uplink (siderolink-sidecar serve --network ${network.name}) and try again`,
      Code.Unavailable,
    );
  }

  const prefix = networkPrefix(network.installationId);
  const existing = await runtime.store.peerByUuid(nodeUuid);
  if (existing) checkBinding(existing, uniqueToken, network.name);
  const maxPeers = limiters.limits.maxPeersPerNetwork;
  if (!existing && (await runtime.store.peerCount()) >= maxPeers) {
    throw new ConnectError(
      `network ${JSON.stringify(network.name)} holds ${maxPeers} nodes, its limit; revoke unused nodes (siderolink-relay node revoke)`,
      Code.ResourceExhausted,
    );
  }
  if (
    !existing &&
    joinToken.maxNodes !== null &&
    (await runtime.store.peerCountByToken(joinToken.id)) >= joinToken.maxNodes
  ) {
    throw new ConnectError(
      `join token ${joinToken.id} has provisioned ${joinToken.maxNodes} nodes, its limit; create another token (siderolink-relay token create ${network.name} --max-nodes N)`,
      Code.ResourceExhausted,
    );
  }
  const predefined = existing ? undefined : await runtime.store.predefinedAddress(nodeUuid);
  let peer: PeerRecord | undefined;
  for (let attempt = 0; !peer; attempt++) {
    const candidate: PeerRecord = {
      nodeUuid,
      uniqueToken,
      joinTokenId: existing ? existing.joinTokenId : joinToken.id,
      rebindAllowed: false,
      publicKey,
      address: existing?.address ?? predefined ?? formatIPv6(randomNodeAddress(prefix)),
      virtualAddress:
        existing?.virtualAddress ?? formatIPv6(randomNodeAddress(virtualNetworkPrefix())),
      talosVersion,
      firstSeen: existing?.firstSeen ?? now,
      lastSeen: now,
      rxBytes: existing?.rxBytes ?? 0,
      txBytes: existing?.txBytes ?? 0,
      rxPackets: existing?.rxPackets ?? 0,
      txPackets: existing?.txPackets ?? 0,
    };
    try {
      await runtime.store.savePeer(candidate);
      peer = candidate;
    } catch (error) {
      // A random address collided with another node's (or a predefined one is taken): only a
      // fresh draw can help, and only a few times.
      if (!(error instanceof StoreConflictError) || existing || attempt + 1 >= ADDRESS_ATTEMPTS)
        throw error;
    }
  }

  if (existing && existing.publicKey !== publicKey) {
    runtime.hub.removePeer(peerEntry(existing), "node provisioned again with a new key");
  }
  let ack: AckResult;
  try {
    ack = await runtime.hub.addPeer(peerEntry(peer));
  } catch (error) {
    if (error instanceof NoUplinkError) throw new ConnectError(error.message, Code.Unavailable);
    throw error;
  }
  // Without the server's ACK the node would get a reply for a peer the server may not know: its
  // handshakes would go unanswered. Unavailable makes it retry, which re-sends the peer.
  if (ack !== "acked") throw new ConnectError(unconfirmed(network.name, ack), Code.Unavailable);

  const virtualEndpoint = formatAddrPort(parseIPv6(peer.virtualAddress), VIRTUAL_PEER_PORT);
  return {
    serverEndpoint: endpointsToWire([virtualEndpoint]),
    serverPublicKey: network.serverPublicKey,
    nodeAddressPrefix: `${peer.address}/64`,
    serverAddress: formatIPv6(serverAddress(prefix)),
    grpcPeerAddrPort: virtualEndpoint,
  };
}

/**
 * The identity fields, each within MAX_FIELD_BYTES, and node_uuid empty (upstream accepts that)
 * or a UUID in its canonical 8-4-4-4-12 hex form; InvalidArgument names the field otherwise.
 */
function checkIdentityFields(request: ProvisionArgs): {
  nodeUuid: string;
  uniqueToken: string;
  talosVersion: string;
} {
  const fields = {
    node_uuid: request.nodeUuid,
    node_unique_token: request.nodeUniqueToken ?? "",
    talos_version: request.talosVersion ?? "",
  };
  for (const [name, value] of Object.entries(fields)) {
    const bytes = new TextEncoder().encode(value).length;
    if (bytes > MAX_FIELD_BYTES) {
      throw new ConnectError(
        `${name}: ${bytes} bytes, over the limit of ${MAX_FIELD_BYTES}`,
        Code.InvalidArgument,
      );
    }
  }
  if (fields.node_uuid !== "" && !UUID_PATTERN.test(fields.node_uuid)) {
    throw new ConnectError(
      `node_uuid: ${JSON.stringify(fields.node_uuid)} is not a UUID; expected 8-4-4-4-12 hex digits`,
      Code.InvalidArgument,
    );
  }
  return {
    // Any case on the wire, one record: stored in lower case.
    nodeUuid: fields.node_uuid.toLowerCase(),
    uniqueToken: fields.node_unique_token,
    talosVersion: fields.talos_version,
  };
}

/**
 * A node UUID is bound to the unique token it first came with: another unique token may not take
 * its record (its addresses) over, and neither may an empty one with a new key, since DMI UUIDs
 * are no secret. A record without a unique token takes the first one a node sends (the node
 * upgraded to a Talos that sends one). An operator lifts the binding once with `node admit`, or
 * drops the record with `node revoke`.
 */
function checkBinding(existing: PeerRecord, uniqueToken: string, network: string): void {
  // The unique token is the node's proof of identity: compared like a secret.
  if (existing.rebindAllowed || constantTimeEqual(existing.uniqueToken, uniqueToken)) return;
  if (existing.uniqueToken === "") return;
  throw new ConnectError(
    `node ${existing.nodeUuid} is bound to another node_unique_token; if this machine was reinstalled, admit it (siderolink-relay node admit ${network} ${existing.nodeUuid}) or revoke the old node`,
    Code.PermissionDenied,
  );
}

/**
 * The first Talos that tunnels WireGuard over gRPC (`grpc_tunnel`): siderolink's
 * WireGuardOverGRPCService landed in March 2024 (siderolabs/siderolink 8866351) and Talos
 * v1.7.0 is the first release whose SideroLink documentation has `grpc_tunnel`.
 */
export const MIN_TUNNEL_TALOS = "v1.7.0";

/**
 * `talos_version` when it names a Talos older than MIN_TUNNEL_TALOS, else undefined. An empty
 * or unparsable version passes: clients other than Talos send none.
 */
export function talosTooOldToTunnel(version: string): string | undefined {
  const match = /^v?(\d+)\.(\d+)/.exec(version);
  if (!match) return undefined;
  const major = Number(match[1]);
  const minor = Number(match[2]);
  return major < 1 || (major === 1 && minor < 7) ? version : undefined;
}

/** Throws ResourceExhausted when `retryMs` > 0, with the wait in the message and Retry-After. */
function rateLimited(retryMs: number, who: string): void {
  if (retryMs > 0) throw rateLimitError(retryMs, `Provision calls from ${who}`);
}

function rateLimitError(retryMs: number, what: string): ConnectError {
  const seconds = Math.max(1, Math.ceil(retryMs / 1000));
  return new ConnectError(`too many ${what}; retry in ${seconds} s`, Code.ResourceExhausted, {
    [RETRY_AFTER_HEADER]: String(seconds),
  });
}

function unconfirmed(network: string, ack: Exclude<AckResult, "acked">): string {
  const what =
    ack === "timeout"
      ? "the management server did not confirm the new peer in time"
      : "the management server's uplink closed before it confirmed the new peer";
  return `${what}; check that siderolink-sidecar serve is running for network ${JSON.stringify(network)} and try again`;
}

function permissionDenied(): ConnectError {
  return new ConnectError(INVALID_JOIN_TOKEN, Code.PermissionDenied);
}

/** `PermissionDenied` -> `permission_denied`. */
export function codeName(code: Code): string {
  return (Code[code] ?? `code_${code}`).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}
