/**
 * Mesh facts in Kubernetes Node annotations: the second discovery source of the mesh role.
 *
 * WgLAN's document says only that peers are discovered "through annotations on the Kubernetes
 * Node". The keys and value formats here are the ones Talos writes and reads for that feature
 * (WgLAN was released as KubeSpan): siderolabs/talos pkg/machinery/constants/constants.go names
 * the keys, internal/pkg/discovery/registry/kubernetes.go formats and parses them
 * (AnnotationsFromAffiliate, AffiliateFromNode), and its kubernetes_test.go shows the values:
 *
 *   networking.talos.dev/kubespan-public-key  base64 WireGuard public key
 *                                             "PLPNBddmTgHJhtw0vxltq1ZBdPP9RNOEUd5JjJZzBRY="
 *   networking.talos.dev/kubespan-ip          the mesh address, no length
 *                                             "fd50:8d60:4238:6302:f857:23ff:fe21:d1e0"
 *   networking.talos.dev/assigned-prefixes    routed prefixes, comma-separated "10.244.3.1/24"
 *   networking.talos.dev/kubespan-endpoints   WireGuard endpoints, comma-separated,
 *                                             "10.0.0.2:51820,192.168.3.4:51820" ([v6]:port)
 *
 * A Node without the public key annotation takes no part in the mesh. Talos drops list items it
 * cannot parse one by one; here a Node with any malformed value is skipped whole, so a typo
 * never yields a peer with half its prefixes. The mesh address must be the one the key derives
 * to in this member's prefix (as for relay records): a Node cannot take over another member's
 * address. Talos KubeSpan nodes derive theirs from a MAC address instead, so they are skipped
 * with that reason: they are not peers of this mesh.
 */
import { meshAddress } from "../../shared/mesh/address.ts";
import {
  MAX_ENDPOINTS,
  MAX_ROUTED_PREFIXES,
  type RecordEndpoint,
} from "../../shared/mesh/record.ts";
import {
  formatIP,
  formatPrefix,
  type Prefix,
  parseIP,
  parseNetworkPrefix,
} from "../../shared/net/ip.ts";
import { formatKey, parseKey } from "../../shared/siderolink/keys.ts";
import { parseUdpEndpoint } from "../bind/endpoint.ts";

export const PUBLIC_KEY_ANNOTATION = "networking.talos.dev/kubespan-public-key";
export const MESH_ADDRESS_ANNOTATION = "networking.talos.dev/kubespan-ip";
export const ROUTED_PREFIXES_ANNOTATION = "networking.talos.dev/assigned-prefixes";
export const ENDPOINTS_ANNOTATION = "networking.talos.dev/kubespan-endpoints";

/** Every annotation this member reads and publishes. */
export const MESH_ANNOTATIONS = [
  PUBLIC_KEY_ANNOTATION,
  MESH_ADDRESS_ANNOTATION,
  ROUTED_PREFIXES_ANNOTATION,
  ENDPOINTS_ANNOTATION,
] as const;

/** A peer as one Node's annotations describe it. */
export interface NodePeer {
  readonly publicKey: Uint8Array;
  readonly meshAddress: Uint8Array;
  readonly routedPrefixes: readonly Prefix[];
  readonly endpoints: readonly RecordEndpoint[];
}

/** A Node's annotations that do not describe a peer; the message names annotation and value. */
export class NodeAnnotationError extends Error {
  override readonly name = "NodeAnnotationError";
}

/**
 * The peer a Node's annotations describe, undefined when the Node has no public key annotation
 * (not a mesh member). Throws NodeAnnotationError when a value is malformed.
 */
export function peerFromAnnotations(
  annotations: Readonly<Record<string, string>> | undefined,
  prefix: Prefix,
): NodePeer | undefined {
  const keyText = annotations?.[PUBLIC_KEY_ANNOTATION];
  if (annotations === undefined || keyText === undefined) return undefined;
  const publicKey = parse(PUBLIC_KEY_ANNOTATION, () => parseKey(keyText, PUBLIC_KEY_ANNOTATION));
  const addressText = annotations[MESH_ADDRESS_ANNOTATION];
  if (addressText === undefined) {
    throw new NodeAnnotationError(`${MESH_ADDRESS_ANNOTATION} is missing beside a public key`);
  }
  const address = parseIP(addressText);
  if (address === undefined) {
    throw new NodeAnnotationError(
      `${MESH_ADDRESS_ANNOTATION} ${JSON.stringify(addressText)} is not an IP address`,
    );
  }
  const expected = meshAddress(prefix, publicKey);
  if (formatIP(address) !== formatIP(expected)) {
    throw new NodeAnnotationError(
      `${MESH_ADDRESS_ANNOTATION} ${addressText} is not the address of key ${keyText} in mesh prefix ${formatPrefix(prefix)} (${formatIP(expected)}); the Node is not a member of this mesh or uses another --prefix`,
    );
  }
  const routedPrefixes = list(annotations[ROUTED_PREFIXES_ANNOTATION]).map((text) =>
    parse(ROUTED_PREFIXES_ANNOTATION, () => parseNetworkPrefix(text, ROUTED_PREFIXES_ANNOTATION)),
  );
  if (routedPrefixes.length > MAX_ROUTED_PREFIXES) {
    throw new NodeAnnotationError(
      `${ROUTED_PREFIXES_ANNOTATION} lists ${routedPrefixes.length} prefixes, at most ${MAX_ROUTED_PREFIXES}`,
    );
  }
  const endpoints = list(annotations[ENDPOINTS_ANNOTATION]).map(parseEndpoint);
  if (endpoints.length > MAX_ENDPOINTS) {
    throw new NodeAnnotationError(
      `${ENDPOINTS_ANNOTATION} lists ${endpoints.length} endpoints, at most ${MAX_ENDPOINTS}`,
    );
  }
  return { publicKey, meshAddress: address, routedPrefixes, endpoints };
}

/** The annotations that describe this member, as Talos formats them (empty lists as ""). */
export function annotationsOf(peer: NodePeer): Record<string, string> {
  return {
    [PUBLIC_KEY_ANNOTATION]: formatKey(peer.publicKey),
    [MESH_ADDRESS_ANNOTATION]: formatIP(peer.meshAddress),
    [ROUTED_PREFIXES_ANNOTATION]: peer.routedPrefixes.map(formatPrefix).join(","),
    [ENDPOINTS_ANNOTATION]: peer.endpoints
      .map((endpoint) =>
        endpoint.address.length === 4
          ? `${formatIP(endpoint.address)}:${endpoint.port}`
          : `[${formatIP(endpoint.address)}]:${endpoint.port}`,
      )
      .join(","),
  };
}

/** Talos writes an empty list as "" and joins with "," (no spaces; spaces are tolerated). */
function list(text: string | undefined): string[] {
  if (text === undefined) return [];
  return text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}

function parseEndpoint(text: string): RecordEndpoint {
  const endpoint = parse(ENDPOINTS_ANNOTATION, () => {
    // A scope names an interface of the Node's host, meaningless on this one.
    if (text.includes("%")) throw new Error(`invalid endpoint "${text}": no IPv6 scope allowed`);
    return parseUdpEndpoint(text);
  });
  if (endpoint.port === 0) {
    throw new NodeAnnotationError(`${ENDPOINTS_ANNOTATION}: endpoint "${text}" has port 0`);
  }
  return { address: endpoint.addressBytes, port: endpoint.port };
}

/** Runs a parser of `annotation`'s value; its error becomes a NodeAnnotationError naming it. */
function parse<T>(annotation: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    const message = (error as Error).message;
    throw new NodeAnnotationError(
      message.startsWith(annotation) ? message : `${annotation}: ${message}`,
    );
  }
}
