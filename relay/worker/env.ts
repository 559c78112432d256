/** The bindings wrangler.toml declares, as the Worker and its Durable Objects see them. */
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
   * Silence (ms) after which a stream is closed as dead; default LIVENESS_TIMEOUT_MS from
   * shared/tunnel/frame.ts. Shorter only where clients ping more often than every 15 s.
   */
  readonly RELAY_LIVENESS_TIMEOUT_MS?: string | number;
}

/** The one directory object's name. */
export const DIRECTORY_NAME = "directory";
