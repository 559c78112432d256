/**
 * Who is on the other end of a connection to the server's overlay services. Only provisioned
 * nodes are: the source address must be the overlay address of a peer the uplink configured.
 *
 * Why the source address is enough: the services listen on the server's overlay address, and
 * a packet from a node's overlay address reaches them either through WireGuard, which accepts
 * it only from the peer whose allowed IP it is, or forged by a host on a LAN of the server.
 * A forger never completes a TCP handshake: the server's SYN-ACK to a node address is routed
 * into WireGuard, sealed for the real node, and the real node resets it.
 *
 * The node's UUID is not in the uplink's peer entries (the frame format has no room for it);
 * it comes from the relay's admin API (`GET /v1/networks/NAME/nodes`, with the admin secret
 * the server role already holds), asked again when an address is not known yet.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { formatIPv6, parseIPv6 } from "../../shared/net/ip.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";

export interface NodeIdentity {
  /** The node's overlay address, canonical form. */
  readonly address: string;
  /** The node's UUID, when the relay told it. */
  readonly uuid: string | undefined;
}

/** The node that owns a source address, or undefined when it is not a node of the network. */
export type NodeResolver = (remoteAddress: string | undefined) => Promise<NodeIdentity | undefined>;

/** The canonical text of an IPv6 address, or undefined when `text` is not one. */
export function canonicalAddress(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  try {
    return formatIPv6(parseIPv6(text, "address"));
  } catch {
    return undefined;
  }
}

/** Node UUIDs by overlay address, read from the relay's admin API. */
export interface NodeUuids {
  /** The UUID of the node at `address` (canonical), asking the relay when it is not known. */
  uuidOf(address: string): Promise<string | undefined>;
  /** The peer set changed: the next unknown address asks the relay again at once. */
  peersChanged(): void;
}

export interface NodeUuidsOptions {
  readonly relayUrl: string;
  readonly network: string;
  readonly adminSecret: string;
  readonly tls: TlsSettings;
  /** Told once per failed request. */
  readonly onError: (error: Error) => void;
}

/** An unknown address asks the relay at most this often while the peer set stays the same. */
const REFRESH_INTERVAL_MS = 10_000;
const REQUEST_TIMEOUT_MS = 5_000;

export function createNodeUuids(options: NodeUuidsOptions): NodeUuids {
  const uuids = new Map<string, string>();
  let generation = 0;
  let fetchedGeneration = -1;
  let fetchedAt = 0;
  let inFlight: Promise<void> | undefined;

  const refresh = (): Promise<void> => {
    inFlight ??= (async () => {
      const started = generation;
      fetchedAt = Date.now();
      try {
        const nodes = await listNodes(options);
        uuids.clear();
        for (const node of nodes) {
          const address = canonicalAddress(node.address);
          if (address !== undefined && typeof node.nodeUuid === "string")
            uuids.set(address, node.nodeUuid);
        }
        fetchedGeneration = started;
      } catch (error) {
        options.onError(error as Error);
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  return {
    async uuidOf(address) {
      const known = uuids.get(address);
      if (known !== undefined) return known;
      if (fetchedGeneration !== generation || Date.now() - fetchedAt >= REFRESH_INTERVAL_MS)
        await refresh();
      return uuids.get(address);
    },
    peersChanged() {
      generation++;
    },
  };
}

interface NodeEntry {
  readonly nodeUuid?: unknown;
  readonly address?: string;
}

function listNodes(options: NodeUuidsOptions): Promise<NodeEntry[]> {
  const url = new URL(
    `/v1/networks/${encodeURIComponent(options.network)}/nodes`,
    options.relayUrl,
  );
  const https = url.protocol === "https:";
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(
      url,
      {
        method: "GET",
        headers: { authorization: `Bearer ${options.adminSecret}`, accept: "application/json" },
        timeout: REQUEST_TIMEOUT_MS,
        ...(https ? tlsOptions(options.tls) : {}),
      },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          body += chunk;
        });
        response.on("end", () => {
          if (response.statusCode !== 200) {
            reject(
              new Error(`GET ${url.pathname}: HTTP ${response.statusCode}: ${body.slice(0, 200)}`),
            );
            return;
          }
          try {
            const parsed = JSON.parse(body) as { nodes?: unknown };
            if (!Array.isArray(parsed.nodes)) throw new Error("no nodes array");
            resolve(parsed.nodes as NodeEntry[]);
          } catch (error) {
            reject(new Error(`GET ${url.pathname}: ${(error as Error).message}`));
          }
        });
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`no answer from ${url.origin} within ${REQUEST_TIMEOUT_MS} ms`)),
    );
    req.on("error", reject);
    req.end();
  });
}
