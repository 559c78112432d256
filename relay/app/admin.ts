/**
 * The admin API: what `siderolink-relay` does to a local data dir, over HTTP for a deployed
 * relay. JSON in and out; errors are `{ "error": "<what to do>" }`.
 *
 *   POST   /v1/networks                      {"name", "omniPrefix"?, "requireUniqueToken"?} -> NetworkSummary (201)  operator
 *   GET    /v1/networks                      {"networks": [names]}                operator
 *   GET    /v1/networks/:network             NetworkSummary                        operator, admin or uplink secret
 *   DELETE /v1/networks/:network/server-key  NetworkSummary (pin cleared)          operator
 *   POST   /v1/networks/:network/uplink-secret {"name", "uplinkSecret"} (201)      operator
 *   PATCH  /v1/networks/:network             {"requireUniqueToken"} -> NetworkSummary  operator or admin secret
 *   GET    /v1/networks/:network/tokens      {"tokens": [TokenSummary]}            operator or admin secret
 *   POST   /v1/networks/:network/tokens      {"maxNodes"?} -> TokenSummary (201)    operator or admin secret
 *   DELETE /v1/networks/:network/tokens/:id  {"revoked": id}                       operator or admin secret
 *   GET    /v1/networks/:network/nodes       {"nodes": [NodeSummary]}              operator or admin secret
 *   DELETE /v1/networks/:network/nodes/:node {"revoked": [NodeSummary]}            operator or admin secret
 *   POST   /v1/networks/:network/nodes/:uuid/admit {"admitted": NodeAdmission}    operator or admin secret
 *   PUT    /v1/networks/:network/addresses/:uuid {"address"} -> same        operator or admin secret
 *   DELETE /v1/networks/:network/addresses/:uuid {"nodeUuid"}                 operator or admin secret
 *   GET    /v1/networks/:network/metrics     Prometheus text                        operator or admin secret
 *   GET    /metrics                          Prometheus text, every live network     operator
 *
 * Credentials: `Authorization: Bearer <token>`; the operator token is relay-wide, an admin
 * secret covers its own network. The uplink secret reads its network's description (the server
 * sidecar learns its address from it) and nothing else. Resetting the pinned server key and
 * minting an uplink secret take the operator token: with them, a holder of the admin secret could
 * substitute the server key the pin protects (docs/security.md, "Server key substitution").
 */
import type { Context, Hono } from "hono";
import { PROMETHEUS_CONTENT_TYPE } from "../../shared/prometheus.ts";
import { validateNetworkName } from "../../shared/siderolink/relay-api.ts";
import { hashSecret } from "../store/secret-hash.ts";
import { StoreConflictError } from "../store/store.ts";
import { HttpError, InvalidInputError } from "./http-error.ts";
import { renderMetrics } from "./metrics.ts";
import {
  admitNode,
  assignAddress,
  createToken,
  describeNetwork,
  initializeNetwork,
  listNodes,
  listTokens,
  mintUplinkSecret,
  type NetworkSecrets,
  type NetworkSummary,
  requireNetwork,
  resetServerKey,
  revokeNodes,
  revokeToken,
  setRequireUniqueToken,
} from "./networks.ts";
import type { ProvisionCounts } from "./provision.ts";
import type { NetworkRuntime, RelayDirectory } from "./runtime.ts";
import { bearerToken, constantTimeEqual } from "./secrets.ts";

export interface AdminOptions {
  readonly directory: RelayDirectory;
  /** Relay-wide operator token; without one, only admin secrets open network routes. */
  readonly operatorToken: string | undefined;
  /** How to set the operator token on this runtime, for the "admin API disabled" answer. */
  readonly operatorTokenHint: string;
  readonly provisions: ProvisionCounts;
  /** How nodes reach this relay, for apiUrl; derived from the request when absent. */
  readonly nodeBaseUrl?: string | undefined;
  /** Whether the runtime serves h2c gRPC, so that a plain HTTP request may yield grpc://. */
  readonly plainGrpc: boolean;
}

interface NodeAccess {
  readonly baseUrl: string;
  /** Flags `siderolink-sidecar join` needs with that URL; empty when its defaults fit. */
  readonly joinFlags: string;
}

/** Host names of this machine: a relay reached on one runs on a developer's machine. */
const LOOPBACK_HOST = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;
/** What a sidecar needs to reach a Worker relay served over plain HTTP (wrangler dev). */
const LOCAL_WORKER_JOIN_FLAGS = "--provision-protocol connect --transport websocket";

export function registerAdminRoutes(app: Hono, options: AdminOptions): void {
  const { directory } = options;
  const operator = (c: Context): void => {
    if (options.operatorToken === undefined) {
      throw new HttpError(
        403,
        `the admin API is disabled: no operator token is set; ${options.operatorTokenHint}`,
      );
    }
    const token = bearerToken(c.req.header("authorization"));
    if (token === undefined || !constantTimeEqual(token, options.operatorToken)) {
      throw new HttpError(
        401,
        "missing or wrong operator token: send Authorization: Bearer <operator token>",
      );
    }
  };
  /** The route's network, for the operator or its admin secret (or its uplink secret with `uplink`). */
  const network = async (c: Context, uplink = false): Promise<NetworkRuntime> => {
    const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
    const token = bearerToken(c.req.header("authorization"));
    const record = await runtime.store.network();
    if (token !== undefined && record) {
      const digest = hashSecret(token);
      if (constantTimeEqual(digest, record.adminSecretHash)) return runtime;
      if (
        uplink &&
        record.uplinkSecretHash !== null &&
        constantTimeEqual(digest, record.uplinkSecretHash)
      )
        return runtime;
    }
    operator(c);
    await requireNetwork(runtime);
    return runtime;
  };
  /** The route's network, for the operator only. */
  const operatorNetwork = async (c: Context): Promise<NetworkRuntime> => {
    operator(c);
    const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
    await requireNetwork(runtime);
    return runtime;
  };
  /** How nodes reach this relay, and the sidecar flags that URL needs. */
  const nodeAccess = (c: Context): NodeAccess => {
    if (options.nodeBaseUrl) return { baseUrl: options.nodeBaseUrl, joinFlags: "" };
    const url = new URL(c.req.url);
    if (url.protocol === "https:") return { baseUrl: `https://${url.host}`, joinFlags: "" };
    // Plain HTTP means h2c for Talos, whose API URL says so with grpc://, where the runtime
    // serves h2c. A runtime without it (Workers) is reached over plain HTTP only on a developer's
    // machine (wrangler dev): the sidecar then takes the grpc:// URL but provisions over Connect
    // and tunnels over a WebSocket. Anywhere else clients reach it through TLS.
    if (options.plainGrpc) return { baseUrl: `grpc://${url.host}`, joinFlags: "" };
    if (LOOPBACK_HOST.test(url.hostname)) {
      return { baseUrl: `grpc://${url.host}`, joinFlags: LOCAL_WORKER_JOIN_FLAGS };
    }
    return { baseUrl: `https://${url.host}`, joinFlags: "" };
  };
  const describe = (
    runtime: NetworkRuntime,
    c: Context,
    created?: NetworkSecrets,
  ): Promise<NetworkSummary> => {
    const access = nodeAccess(c);
    return describeNetwork(runtime, access.baseUrl, created, access.joinFlags);
  };

  app.post("/v1/networks", async (c) => {
    operator(c);
    const body = await c.req.json().catch(() => undefined);
    const name = typeof body?.name === "string" ? body.name : "";
    const omniPrefix = body?.omniPrefix ?? false;
    if (typeof omniPrefix !== "boolean")
      throw new HttpError(
        400,
        `"omniPrefix" must be true or false, got ${JSON.stringify(omniPrefix)}`,
      );
    const runtime = await directory.runtime(validateNetworkName(name));
    const requireUniqueToken = optionalBoolean(body, "requireUniqueToken");
    let created: NetworkSecrets;
    try {
      created = await initializeNetwork(runtime, Date.now(), { omniPrefix, requireUniqueToken });
    } catch (error) {
      // Announced again: an announcement lost to a failure is made good by creating it again.
      if (error instanceof StoreConflictError) await directory.created(runtime.name);
      throw error;
    }
    await directory.created(runtime.name);
    return c.json(await describe(runtime, c, created), 201);
  });
  app.get("/v1/networks", async (c) => {
    operator(c);
    return c.json({ networks: await directory.list() });
  });
  app.get("/v1/networks/:network", async (c) => c.json(await describe(await network(c, true), c)));
  app.delete("/v1/networks/:network/server-key", async (c) => {
    const runtime = await operatorNetwork(c);
    await resetServerKey(runtime);
    return c.json(await describe(runtime, c));
  });
  app.post("/v1/networks/:network/uplink-secret", async (c) => {
    const runtime = await operatorNetwork(c);
    return c.json({ name: runtime.name, uplinkSecret: await mintUplinkSecret(runtime) }, 201);
  });
  app.get("/v1/networks/:network/tokens", async (c) =>
    c.json({ tokens: await listTokens(await network(c)) }),
  );
  app.patch("/v1/networks/:network", async (c) => {
    const runtime = await network(c);
    const body = await c.req.json().catch(() => undefined);
    const required = optionalBoolean(body, "requireUniqueToken");
    if (required === undefined)
      throw new InvalidInputError('expected a JSON body {"requireUniqueToken": true|false}');
    await setRequireUniqueToken(runtime, required);
    return c.json(await describe(runtime, c));
  });
  app.post("/v1/networks/:network/tokens", async (c) => {
    const runtime = await network(c);
    const body = await c.req.json().catch(() => undefined);
    const maxNodes = body?.maxNodes;
    if (maxNodes !== undefined && maxNodes !== null && typeof maxNodes !== "number")
      throw new InvalidInputError('"maxNodes" must be a number or null');
    return c.json(await createToken(runtime, Date.now(), maxNodes ?? null), 201);
  });
  app.delete("/v1/networks/:network/tokens/:id", async (c) => {
    const id = c.req.param("id");
    if (!(await revokeToken(await network(c), id))) {
      throw new HttpError(404, `no active join token ${JSON.stringify(id)} (see the token list)`);
    }
    return c.json({ revoked: id });
  });
  app.get("/v1/networks/:network/nodes", async (c) =>
    c.json({ nodes: await listNodes(await network(c)) }),
  );
  app.delete("/v1/networks/:network/nodes/:node", async (c) => {
    const node = c.req.param("node");
    const revoked = await revokeNodes(await network(c), node);
    if (revoked.length === 0) {
      throw new HttpError(
        404,
        `no node matches ${JSON.stringify(node)}: give a node UUID, address, virtual address or public key`,
      );
    }
    return c.json({ revoked });
  });
  app.post("/v1/networks/:network/nodes/:uuid/admit", async (c) =>
    c.json({ admitted: await admitNode(await network(c), c.req.param("uuid")) }),
  );
  app.put("/v1/networks/:network/addresses/:uuid", async (c) => {
    const body = await c.req.json().catch(() => undefined);
    if (typeof body?.address !== "string")
      throw new InvalidInputError('expected a JSON body {"address": "<IPv6 address>"}');
    const nodeUuid = c.req.param("uuid");
    return c.json({
      nodeUuid,
      address: await assignAddress(await network(c), nodeUuid, body.address),
    });
  });
  app.delete("/v1/networks/:network/addresses/:uuid", async (c) => {
    const nodeUuid = c.req.param("uuid");
    await assignAddress(await network(c), nodeUuid, undefined);
    return c.json({ nodeUuid });
  });
  app.get("/v1/networks/:network/metrics", async (c) => {
    const runtime = await network(c);
    return c.body(renderMetrics([runtime], options.provisions), 200, {
      "content-type": PROMETHEUS_CONTENT_TYPE,
    });
  });
  app.get("/metrics", (c) => {
    operator(c);
    return c.body(renderMetrics(directory.live(), options.provisions), 200, {
      "content-type": PROMETHEUS_CONTENT_TYPE,
    });
  });
}

/** A boolean field of a JSON body, undefined when absent; a value of another type is refused. */
function optionalBoolean(body: unknown, field: string): boolean | undefined {
  const value = (body as Record<string, unknown> | undefined)?.[field];
  if (value === undefined) return undefined;
  if (typeof value !== "boolean") throw new InvalidInputError(`"${field}" must be true or false`);
  return value;
}
