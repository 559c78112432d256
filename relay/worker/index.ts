/**
 * The relay's Worker: it finds each request's network and hands the request to that network's
 * Durable Object, with no lookup table on the way.
 *
 *   POST /sidero.link.ProvisionService/Provision   network from the join token in the body
 *                                                  (`<network>.<secret>`)
 *   /v1/networks/:network/...                      network from the path (tunnel, uplink,
 *                                                  and the admin routes of one network)
 *   POST /v1/networks                              network from the JSON body's "name"
 *   /v1/mesh/:cluster/...                          that mesh cluster's object (mesh-object.ts)
 *
 * What names no network (GET /healthz, GET /v1/networks, GET /metrics, a Provision whose token
 * cannot be read) is answered here by the same app over an edge directory (edge.ts).
 *
 * The Worker's vars are checked at the first request: while one is wrong, every route (health
 * check included) answers 503 with JSON naming it. Nothing answers with an HTML error page.
 */

import { isHexId } from "../../shared/mesh/cluster.ts";
import { clusterInPath } from "../../shared/mesh/frame.ts";
import { isNetworkName, NETWORKS_PATH, networkInPath } from "../../shared/siderolink/relay-api.ts";
import { ConfigError } from "../app/config.ts";
import { provisionNetwork } from "../app/connect.ts";
import { serveEdge } from "./edge.ts";
import { configOf, type Env, internalError, misconfigured } from "./env.ts";

export { DirectoryObject } from "./directory-object.ts";
export { MeshObject } from "./mesh-object.ts";
export { NetworkObject } from "./network-object.ts";

const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

export default {
  async fetch(request, env): Promise<Response> {
    const config = configOf(env);
    if (config instanceof ConfigError) return misconfigured(config);
    try {
      const cluster = clusterInPath(new URL(request.url).pathname);
      if (cluster !== undefined && isHexId(cluster)) {
        return await env.MESH.get(env.MESH.idFromName(cluster)).fetch(request);
      }
      const network = await networkOf(request);
      if (network === undefined) return await serveEdge(request, env, config);
      return await env.NETWORK.get(env.NETWORK.idFromName(network)).fetch(request);
    } catch (error) {
      return internalError(error);
    }
  },
} satisfies ExportedHandler<Env>;

/** The valid network name the request is for, or undefined for the edge app to answer. */
async function networkOf(request: Request): Promise<string | undefined> {
  const { pathname } = new URL(request.url);
  let name: string | undefined;
  if (pathname === PROVISION_PATH && request.method === "POST") {
    name = await provisionNetwork(request);
  } else if (pathname === NETWORKS_PATH && request.method === "POST") {
    const body: unknown = await request
      .clone()
      .json()
      .catch(() => undefined);
    const field = (body as { name?: unknown } | undefined)?.name;
    name = typeof field === "string" ? field : undefined;
  } else {
    name = networkInPath(pathname);
  }
  return name !== undefined && isNetworkName(name) ? name : undefined;
}
