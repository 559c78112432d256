/**
 * The relay as one Hono app, the same on every runtime; a runtime passes its RelayDirectory.
 *
 *   GET  /healthz                                  "ok"
 *   POST /sidero.link.ProvisionService/Provision   Connect and gRPC-web (provision.ts)
 *   GET  /v1/networks/:network/tunnel|uplink       WebSocket streams (tunnel.ts)
 *   POST /v1/networks/:network/tunnel|uplink/...   the HTTP-only tunnel, gRPC-web (http-tunnel.ts)
 *   /v1/networks..., /metrics                      admin API (admin.ts)
 *   /v1/mesh/:cluster/...                          mesh discovery and relaying (relay/mesh/)
 */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import { type MeshDirectory, registerMeshRoutes } from "../mesh/routes.ts";
import { NetworkNotFoundError, StoreConflictError, StoreUnavailableError } from "../store/store.ts";
import { registerAdminRoutes } from "./admin.ts";
import { createFetchRoutes } from "./connect.ts";
import { HttpError } from "./http-error.ts";
import { registerHttpTunnelRoutes } from "./http-tunnel.ts";
import { DEFAULT_RELAY_LIMITS, type RelayLimits } from "./limits.ts";
import { provisionRecord, type RelayLog, SILENT_LOG } from "./log.ts";
import {
  createProvisionHandler,
  type ProvisionHandler,
  type ProvisionObserver,
} from "./provision.ts";
import type { RelayDirectory } from "./runtime.ts";
import { registerTunnelRoutes } from "./tunnel.ts";

export interface RelayAppOptions {
  readonly directory: RelayDirectory;
  /** Relay-wide token for the admin API; undefined disables operator routes. */
  readonly operatorToken?: string | undefined;
  /**
   * How an operator sets the operator token on this runtime, for the "admin API disabled"
   * answer (a flag and environment variable on Node, a Worker secret on Workers).
   */
  readonly operatorTokenHint?: string;
  /** How nodes reach this relay (`grpc://host:port`, `https://host`), for apiUrl. */
  readonly nodeBaseUrl?: string | undefined;
  /**
   * Whether this runtime answers plain gRPC over h2c (Node does; Workers do not). Without it,
   * a relay reached over plain HTTP still gives nodes an https:// API URL, the only kind of
   * URL Talos can use with it.
   */
  readonly plainGrpc?: boolean;
  /** Shared with a runtime that serves Provision elsewhere too (Node's HTTP/2 gRPC). */
  readonly provision?: ProvisionHandler;
  readonly now?: () => number;
  /** Abuse limits; each field defaults to DEFAULT_RELAY_LIMITS's. */
  readonly limits?: Partial<RelayLimits>;
  /**
   * The address the request came from, as the runtime knows it (the TCP peer on Node, the edge's
   * CF-Connecting-IP on Workers); never a header a client could set unchecked.
   */
  readonly clientAddress?: (c: Context) => string | undefined;
  /** Where provisions are logged (log.ts); nothing is logged without one. */
  readonly log?: RelayLog;
  /** Told of every Provision call's outcome after it is logged (a runtime's own counters). */
  readonly onProvision?: ProvisionObserver;
  /** Serves the mesh discovery service (/v1/mesh/..., relay/mesh/) from these clusters. */
  readonly mesh?: MeshDirectory;
}

/** How the operator token is set on Node, for the "admin API disabled" answer. */
export const NODE_OPERATOR_TOKEN_HINT =
  "start the relay with --operator-token TOKEN or SIDEROLINK_RELAY_OPERATOR_TOKEN in its environment";

/** The largest admin API body (JSON of a name or an address). */
export const MAX_ADMIN_BODY_BYTES = 16 * 1024;

/** The answer to an admin API body over MAX_ADMIN_BODY_BYTES. */
export function tooLarge(): Response {
  return Response.json(
    {
      error: `request body over ${MAX_ADMIN_BODY_BYTES} bytes; send at most ${MAX_ADMIN_BODY_BYTES} bytes`,
    },
    { status: 413 },
  );
}

export interface RelayApp {
  readonly app: Hono;
  readonly provision: ProvisionHandler;
}

export function createRelayApp(options: RelayAppOptions): RelayApp {
  const now = options.now ?? Date.now;
  const limits: RelayLimits = { ...DEFAULT_RELAY_LIMITS, ...options.limits };
  const log = options.log ?? SILENT_LOG;
  const onProvision = options.onProvision;
  const provision =
    options.provision ??
    createProvisionHandler(options.directory, now, limits, (outcome) => {
      log(provisionRecord(outcome));
      onProvision?.(outcome);
    });
  const clientAddress = options.clientAddress ?? (() => undefined);
  const app = new Hono();

  app.get("/healthz", (c) => c.text("ok"));
  for (const [path, handler] of createFetchRoutes(provision)) {
    app.post(path, (c) => handler(c.req.raw, clientAddress(c)));
  }
  // Before the admin body limit: a Send carries up to a whole frame.
  registerHttpTunnelRoutes(app, options.directory, now, limits.maxTunnels);
  app.use(
    "/v1/*",
    bodyLimit({
      maxSize: MAX_ADMIN_BODY_BYTES,
      onError: () => tooLarge(),
    }),
  );
  registerTunnelRoutes(app, options.directory, now, limits.maxTunnels);
  if (options.mesh) registerMeshRoutes(app, { directory: options.mesh, clientAddress, now });
  registerAdminRoutes(app, {
    directory: options.directory,
    operatorToken: options.operatorToken,
    operatorTokenHint: options.operatorTokenHint ?? NODE_OPERATOR_TOKEN_HINT,
    provisions: provision.counts,
    nodeBaseUrl: options.nodeBaseUrl,
    plainGrpc: options.plainGrpc ?? true,
  });

  app.onError((error, c) => {
    if (error instanceof HttpError) return c.json({ error: error.message }, error.status);
    // Values checked by shared code (a network name, an address) name their field.
    if (error instanceof SideroLinkError) return c.json({ error: error.message }, 400);
    if (error instanceof NetworkNotFoundError) return c.json({ error: error.message }, 404);
    if (error instanceof StoreConflictError) return c.json({ error: error.message }, 409);
    if (error instanceof StoreUnavailableError) {
      console.error(`relay: ${error.message}`);
      return c.json({ error: error.message }, 503);
    }
    console.error("relay: unhandled error", error);
    return c.json({ error: "internal error; see the relay's log" }, 500);
  });
  app.notFound((c) =>
    c.json({ error: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404),
  );
  return { app, provision };
}
