/**
 * The admin API: what `siderolink-relay` does to a local data dir, over HTTP for a deployed
 * relay. JSON in and out; errors are `{ "error": "<what to do>" }`.
 *
 *   POST   /v1/networks                      {"name"} -> NetworkSummary (201)     operator
 *   GET    /v1/networks                      {"networks": [names]}                operator
 *   GET    /v1/networks/:network             NetworkSummary                        operator or admin secret
 *   GET    /v1/networks/:network/tokens      {"tokens": [TokenSummary]}            operator or admin secret
 *   POST   /v1/networks/:network/tokens      TokenSummary (201)                    operator or admin secret
 *   DELETE /v1/networks/:network/tokens/:id  {"revoked": id}                       operator or admin secret
 *   GET    /v1/networks/:network/nodes       {"nodes": [NodeSummary]}              operator or admin secret
 *   DELETE /v1/networks/:network/nodes/:node {"revoked": [NodeSummary]}            operator or admin secret
 *   POST   /v1/networks/:network/nodes/:uuid/admit {"admitted": count}            operator or admin secret
 *   PUT    /v1/networks/:network/addresses/:uuid {"address"} -> same        operator or admin secret
 *   DELETE /v1/networks/:network/addresses/:uuid {"nodeUuid"}                 operator or admin secret
 *   GET    /v1/networks/:network/metrics     Prometheus text                        operator or admin secret
 *   GET    /metrics                          Prometheus text, every live network     operator
 *
 * Credentials: `Authorization: Bearer <token>`; the operator token is relay-wide, an admin
 * secret covers its own network.
 */
import type { Context, Hono } from "hono";
import { PROMETHEUS_CONTENT_TYPE } from "../../shared/prometheus.ts";
import { validateNetworkName } from "../../shared/siderolink/relay-api.ts";
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
  requireNetwork,
  revokeNodes,
  revokeToken,
} from "./networks.ts";
import type { ProvisionCounts } from "./provision.ts";
import type { NetworkRuntime, RelayDirectory } from "./runtime.ts";
import { bearerToken, constantTimeEqual } from "./secrets.ts";

export interface AdminOptions {
  readonly directory: RelayDirectory;
  /** Relay-wide operator token; without one, only admin secrets open network routes. */
  readonly operatorToken: string | undefined;
  readonly provisions: ProvisionCounts;
  /** How nodes reach this relay, for apiUrl; derived from the request when absent. */
  readonly nodeBaseUrl?: string | undefined;
  /** Whether the runtime serves h2c gRPC, so that a plain HTTP request may yield grpc://. */
  readonly plainGrpc: boolean;
}

export function registerAdminRoutes(app: Hono, options: AdminOptions): void {
  const { directory } = options;
  const operator = (c: Context): void => {
    if (options.operatorToken === undefined) {
      throw new HttpError(
        403,
        "the admin API is disabled: start the relay with an operator token (SIDEROLINK_RELAY_OPERATOR_TOKEN)",
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
  const network = async (c: Context): Promise<NetworkRuntime> => {
    const runtime = await directory.runtime(validateNetworkName(c.req.param("network") ?? ""));
    const token = bearerToken(c.req.header("authorization"));
    const record = await runtime.store.network();
    if (token !== undefined && record && constantTimeEqual(token, record.adminSecret))
      return runtime;
    operator(c);
    await requireNetwork(runtime);
    return runtime;
  };
  const baseUrl = (c: Context): string => {
    if (options.nodeBaseUrl) return options.nodeBaseUrl;
    const url = new URL(c.req.url);
    // Plain HTTP here means h2c for Talos, whose API URL says so with grpc://, where the runtime
    // serves h2c; elsewhere (Workers) clients only ever reach it through TLS.
    const tls = url.protocol === "https:" || !options.plainGrpc;
    return tls ? `https://${url.host}` : `grpc://${url.host}`;
  };

  app.post("/v1/networks", async (c) => {
    operator(c);
    const body = await c.req.json().catch(() => undefined);
    const name = typeof body?.name === "string" ? body.name : "";
    const runtime = await directory.runtime(validateNetworkName(name));
    await initializeNetwork(runtime);
    return c.json(await describeNetwork(runtime, baseUrl(c)), 201);
  });
  app.get("/v1/networks", async (c) => {
    operator(c);
    return c.json({ networks: await directory.list() });
  });
  app.get("/v1/networks/:network", async (c) =>
    c.json(await describeNetwork(await network(c), baseUrl(c))),
  );
  app.get("/v1/networks/:network/tokens", async (c) =>
    c.json({ tokens: await listTokens(await network(c)) }),
  );
  app.post("/v1/networks/:network/tokens", async (c) =>
    c.json(await createToken(await network(c)), 201),
  );
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
  app.post("/v1/networks/:network/nodes/:uuid/admit", async (c) => {
    const nodeUuid = c.req.param("uuid");
    const admitted = await admitNode(await network(c), nodeUuid);
    if (admitted === 0)
      throw new HttpError(404, `node ${JSON.stringify(nodeUuid)} is not revoked; nothing to admit`);
    return c.json({ admitted });
  });
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
