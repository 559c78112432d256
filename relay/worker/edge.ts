/**
 * What the Worker answers itself, for requests that name no network or a network that does not
 * exist: the relay app over a directory that lists networks from the directory object and holds
 * none of its own (a network that does not exist gets an absent runtime: absent-network.ts), and
 * the relay-wide /metrics gathered from every network's object and the directory's own counts.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Context, Hono } from "hono";
import { PROMETHEUS_CONTENT_TYPE } from "../../shared/prometheus.ts";
import { createRelayApp } from "../app/app.ts";
import type { RelayConfig } from "../app/config.ts";
import { CONSOLE_OBJECT_LOG } from "../app/log.ts";
import type { RelayDirectory } from "../app/runtime.ts";
import { bearerToken, constantTimeEqual } from "../app/secrets.ts";
import { absentNetworkRuntime } from "./absent-network.ts";
import { DIRECTORY_NAME, type Env, WORKER_OPERATOR_TOKEN_HINT } from "./env.ts";
import { collectMetrics, countEdgeProvisions } from "./metrics.ts";
import { isKnownMissing, networkExists } from "./network-names.ts";

interface EdgeApp {
  readonly env: Env;
  readonly app: Hono;
  /** Provision results of this isolate not yet added to the directory's counts. */
  readonly pending: Record<string, number>;
}

let cached: EdgeApp | undefined;

export async function serveEdge(
  request: Request,
  env: Env,
  config: RelayConfig,
): Promise<Response> {
  const { pathname } = new URL(request.url);
  if (pathname === "/metrics" && request.method === "GET" && isOperator(request, env)) {
    return new Response(await collectMetrics(request, env), {
      headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
    });
  }
  // Everything else, refusals of /metrics included, as the app words them.
  const edge = edgeApp(env, config);
  const response = await edge.app.fetch(request);
  await flushPending(edge);
  return response;
}

/** Hands this isolate's Provision counts to the directory, which keeps them across isolates. */
async function flushPending(edge: EdgeApp): Promise<void> {
  const counts = { ...edge.pending };
  if (Object.keys(counts).length === 0) return;
  for (const code of Object.keys(counts)) delete edge.pending[code];
  await countEdgeProvisions(edge.env, counts);
}

export function isOperator(request: Request, env: Env): boolean {
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
function edgeApp(env: Env, config: RelayConfig): EdgeApp {
  if (cached?.env === env) return cached;
  const directoryObject = () => env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME));
  const directory: RelayDirectory = {
    runtime: async (name) => {
      if (isKnownMissing(name) || !(await networkExists(env, name))) {
        return absentNetworkRuntime(name);
      }
      // An existing network reaches its object, except by a Provision whose body index.ts could
      // not read.
      throw new ConnectError(
        "the relay finds the network from the join token in the Provision body and could not read it from this encoding; send uncompressed protobuf (Connect or gRPC-web) or Connect JSON",
        Code.InvalidArgument,
      );
    },
    list: () => directoryObject().list(),
    created: (name) => directoryObject().add(name),
    live: () => [],
  };
  const pending: Record<string, number> = {};
  const { app } = createRelayApp({
    directory,
    operatorToken: env.RELAY_OPERATOR_TOKEN,
    operatorTokenHint: WORKER_OPERATOR_TOKEN_HINT,
    clientAddress: edgeClientAddress,
    plainGrpc: false,
    limits: config.limits,
    log: CONSOLE_OBJECT_LOG,
    onProvision: ({ result }) => {
      pending[result] = (pending[result] ?? 0) + 1;
    },
  });
  cached = { env, app, pending };
  return cached;
}
