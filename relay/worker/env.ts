/** The bindings wrangler.toml declares, as the Worker and its Durable Objects see them. */
import { ConfigError, type RelayConfig, workerConfig } from "../app/config.ts";
import type { DirectoryObject } from "./directory-object.ts";
import type { MeshObject } from "./mesh-object.ts";
import type { NetworkObject } from "./network-object.ts";

export interface Env {
  /** One object per network, addressed by `idFromName(network)`. */
  readonly NETWORK: DurableObjectNamespace<NetworkObject>;
  /** One object (DIRECTORY_NAME) listing every network's name for the admin API. */
  readonly DIRECTORY: DurableObjectNamespace<DirectoryObject>;
  /** One object per mesh cluster, addressed by `idFromName(cluster id)`. */
  readonly MESH: DurableObjectNamespace<MeshObject>;
  /**
   * The relay-wide admin credential: `wrangler secret put RELAY_OPERATOR_TOKEN`. Without it
   * the operator routes answer 403 and only each network's admin secret works.
   */
  readonly RELAY_OPERATOR_TOKEN?: string;
  /**
   * Every limit of relay/app/config.ts as `RELAY_<NAME>` in `[vars]` (the README's limits
   * table), e.g. RELAY_LIVENESS_TIMEOUT_MS. Read and checked at the first request.
   */
  readonly [variable: `RELAY_${string}`]: unknown;
}

/** The one directory object's name. */
export const DIRECTORY_NAME = "directory";

/** How the operator token is set on Workers, for the "admin API disabled" answer. */
export const WORKER_OPERATOR_TOKEN_HINT =
  "set it with `npx wrangler secret put RELAY_OPERATOR_TOKEN` (under `wrangler dev`: RELAY_OPERATOR_TOKEN=... in .dev.vars)";

const configs = new WeakMap<Env, RelayConfig | ConfigError>();

/**
 * The relay's configuration from the Worker's vars, read once per isolate; a ConfigError when a
 * var cannot be used, which every route then reports.
 */
export function configOf(env: Env): RelayConfig | ConfigError {
  let config = configs.get(env);
  if (config === undefined) {
    try {
      config = workerConfig(env as unknown as Record<string, unknown>);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      config = error;
    }
    configs.set(env, config);
  }
  return config;
}

/** The answer to every request while a var is wrong: 503 with the var, its value and the fix. */
export function misconfigured(error: ConfigError): Response {
  return Response.json(
    {
      error: `the relay is misconfigured: ${error.message}; fix it in wrangler.toml [vars] (or the dashboard) and deploy`,
      setting: error.setting,
      value: error.value,
    },
    { status: 503 },
  );
}

/** The answer to a request that failed in a way no route handled: JSON, never an HTML page. */
export function internalError(error: unknown): Response {
  console.error("relay: unhandled error", error);
  return Response.json(
    { error: "internal error; see the Worker's logs (npx wrangler tail)" },
    { status: 500 },
  );
}
