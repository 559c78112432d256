/**
 * What the Worker answers itself, for requests that name no network: the relay app over a
 * directory that lists networks from the directory object and holds none of its own, and the
 * relay-wide /metrics gathered from every network's object.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Context, Hono } from "hono";
import { PROMETHEUS_CONTENT_TYPE } from "../../shared/prometheus.ts";
import { createRelayApp } from "../app/app.ts";
import type { RelayDirectory } from "../app/runtime.ts";
import { bearerToken, constantTimeEqual } from "../app/secrets.ts";
import { DIRECTORY_NAME, type Env } from "./env.ts";
import { collectMetrics } from "./metrics.ts";

let cached: { readonly env: Env; readonly app: Hono } | undefined;

export async function serveEdge(request: Request, env: Env): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (pathname === "/metrics" && request.method === "GET" && isOperator(request, env)) {
    return new Response(await collectMetrics(request, env), {
      headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
    });
  }
  // Everything else, refusals of /metrics included, as the app words them.
  return edgeApp(env).fetch(request);
}

function isOperator(request: Request, env: Env): boolean {
  const token = bearerToken(request.headers.get("authorization"));
  const operatorToken = env.RELAY_OPERATOR_TOKEN;
  return (
    token !== undefined && operatorToken !== undefined && constantTimeEqual(token, operatorToken)
  );
}

/** The client's address as Cloudflare's edge saw it (the edge sets the header, not the client). */
export function edgeClientAddress(c: Context): string | undefined {
  return c.req.header("cf-connecting-ip");
}

/** The app for `env`, built once per isolate. */
function edgeApp(env: Env): Hono {
  if (cached?.env === env) return cached.app;
  const directory: RelayDirectory = {
    runtime: async () => {
      // Only a Provision whose body index.ts could not read gets this far with a valid token.
      throw new ConnectError(
        "the relay finds the network from the join token in the Provision body and could not read it from this encoding; send uncompressed protobuf (Connect or gRPC-web) or Connect JSON",
        Code.InvalidArgument,
      );
    },
    list: () => env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME)).list(),
    live: () => [],
  };
  const { app } = createRelayApp({
    directory,
    operatorToken: env.RELAY_OPERATOR_TOKEN,
    clientAddress: edgeClientAddress,
    plainGrpc: false,
  });
  cached = { env, app };
  return app;
}
