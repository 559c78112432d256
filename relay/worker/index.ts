/**
 * The relay's Worker: it finds each request's network and hands the request to that network's
 * Durable Object, once the directory object says the network exists (network-names.ts):
 *
 *   POST /sidero.link.ProvisionService/Provision   network from the join token in the body
 *                                                  (`<network>.<secret>`)
 *   /v1/networks/:network/...                      network from the path (tunnel, uplink,
 *                                                  and the admin routes of one network)
 *   POST /v1/networks                              network from the JSON body's "name", read
 *                                                  only with the operator token and at most
 *                                                  MAX_ADMIN_BODY_BYTES of it
 *   /v1/mesh/:cluster/...                          that mesh cluster's object (mesh-object.ts)
 *
 * What names no network (GET /healthz, GET /v1/networks, GET /metrics, a Provision whose token
 * cannot be read), and what names a network that does not exist, is answered here by the same
 * app over an edge directory (edge.ts): a guessed name wakes no object.
 *
 * The Worker's vars are checked at the first request: while one is wrong, every route (health
 * check included) answers 503 with JSON naming it. Nothing answers with an HTML error page.
 */

import { isHexId } from "../../shared/mesh/cluster.ts";
import { clusterInPath } from "../../shared/mesh/frame.ts";
import { isNetworkName, NETWORKS_PATH, networkInPath } from "../../shared/siderolink/relay-api.ts";
import { MAX_ADMIN_BODY_BYTES, tooLarge } from "../app/app.ts";
import { readBounded } from "../app/bounded-body.ts";
import { ConfigError, type RelayConfig } from "../app/config.ts";
import { provisionNetwork } from "../app/connect.ts";
import { isOperator, serveEdge } from "./edge.ts";
import { configOf, type Env, internalError, misconfigured } from "./env.ts";
import { networkExists, whileMissing } from "./network-names.ts";

export { DirectoryObject } from "./directory-object.ts";
export { MeshObject } from "./mesh-object.ts";
export { NetworkObject } from "./network-object.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

export default {
  async fetch(request, env): Promise<Response> {
    const config = configOf(env);
    if (config instanceof ConfigError) return misconfigured(config);
    try {
      const { pathname } = new URL(request.url);
      const cluster = clusterInPath(pathname);
      if (cluster !== undefined && isHexId(cluster)) {
        return await env.MESH.get(env.MESH.idFromName(cluster)).fetch(request);
      }
      if (pathname === NETWORKS_PATH && request.method === "POST") {
        return await createNetwork(request, env, config);
      }
      const provision = pathname === PROVISION_PATH && request.method === "POST";
      const name = provision ? await provisionNetwork(request) : networkInPath(pathname);
      if (name === undefined || !isNetworkName(name)) return await serveEdge(request, env, config);
      if (!(await networkExists(env, name, provision ? undefined : routeOf(pathname)))) {
        return await whileMissing(name, () => serveEdge(request, env, config));
      }
      return await env.NETWORK.get(env.NETWORK.idFromName(name)).fetch(request);
    } catch (error) {
      return internalError(error);
    }
  },
} satisfies ExportedHandler<Env>;

/**
 * POST /v1/networks: the operator token and the declared length are checked before any of the
 * body is read, and the body is read no further than MAX_ADMIN_BODY_BYTES; only then does the
 * name in it wake the new network's object.
 */
async function createNetwork(request: Request, env: Env, config: RelayConfig): Promise<Response> {
  if (!isOperator(request, env)) {
    // The edge app words the refusal; it gets no body to read.
    return serveEdge(
      new Request(request.url, { method: "POST", headers: request.headers }),
      env,
      config,
    );
  }
  if (Number(request.headers.get("content-length") ?? "0") > MAX_ADMIN_BODY_BYTES) {
    return tooLarge();
  }
  const body = await readBounded(request, MAX_ADMIN_BODY_BYTES);
  if (body === undefined) return tooLarge();
  const read = new Request(request.url, { method: "POST", headers: request.headers, body });
  let field: unknown;
  try {
    field = (JSON.parse(new TextDecoder().decode(body)) as { name?: unknown } | null)?.name;
  } catch {
    field = undefined;
  }
  if (typeof field !== "string" || !isNetworkName(field)) return serveEdge(read, env, config);
  return env.NETWORK.get(env.NETWORK.idFromName(field)).fetch(read);
}

/** The route of a `/v1/networks/:network/...` path, as refusals of unknown networks count it. */
function routeOf(pathname: string): string {
  if (pathname.endsWith("/tunnel")) return "tunnel";
  if (pathname.endsWith("/uplink")) return "uplink";
  return "admin";
}
