/**
 * The relay as one Hono app, the same on every runtime; a runtime passes its RelayDirectory.
 *
 *   GET  /healthz                                  "ok"
 *   POST /sidero.link.ProvisionService/Provision   Connect and gRPC-web (provision.ts)
 *   GET  /v1/networks/:network/tunnel|uplink       WebSocket streams (tunnel.ts)
 *   /v1/networks..., /metrics                      admin API (admin.ts)
 */
import { Hono } from "hono";
import { NetworkNotFoundError, StoreConflictError } from "../store/store.ts";
import { HttpError, registerAdminRoutes } from "./admin.ts";
import { createFetchRoutes } from "./connect.ts";
import { createProvisionHandler, type ProvisionHandler } from "./provision.ts";
import type { RelayDirectory } from "./runtime.ts";
import { registerTunnelRoutes } from "./tunnel.ts";

export interface RelayAppOptions {
  readonly directory: RelayDirectory;
  /** Relay-wide token for the admin API; undefined disables operator routes. */
  readonly operatorToken?: string | undefined;
  /** How nodes reach this relay (`grpc://host:port`, `https://host`), for apiUrl. */
  readonly nodeBaseUrl?: string | undefined;
  /** Shared with a runtime that serves Provision elsewhere too (Node's HTTP/2 gRPC). */
  readonly provision?: ProvisionHandler;
  readonly now?: () => number;
}

export interface RelayApp {
  readonly app: Hono;
  readonly provision: ProvisionHandler;
}

export function createRelayApp(options: RelayAppOptions): RelayApp {
  const now = options.now ?? Date.now;
  const provision = options.provision ?? createProvisionHandler(options.directory, now);
  const app = new Hono();

  app.get("/healthz", (c) => c.text("ok"));
  for (const [path, handler] of createFetchRoutes(provision)) {
    app.post(path, (c) => handler(c.req.raw));
  }
  registerTunnelRoutes(app, options.directory, now);
  registerAdminRoutes(app, {
    directory: options.directory,
    operatorToken: options.operatorToken,
    provisions: provision.counts,
    nodeBaseUrl: options.nodeBaseUrl,
  });

  app.onError((error, c) => {
    if (error instanceof HttpError) return c.json({ error: error.message }, error.status);
    if (error instanceof NetworkNotFoundError) return c.json({ error: error.message }, 404);
    if (error instanceof StoreConflictError) return c.json({ error: error.message }, 409);
    if (error instanceof RangeError) return c.json({ error: error.message }, 400);
    console.error("relay: unhandled error", error);
    return c.json({ error: "internal error; see the relay's log" }, 500);
  });
  app.notFound((c) =>
    c.json({ error: `no route for ${c.req.method} ${new URL(c.req.url).pathname}` }, 404),
  );
  return { app, provision };
}
