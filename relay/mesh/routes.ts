/**
 * The mesh discovery service's routes (shared/mesh/frame.ts), on every runtime:
 *
 *   GET /v1/mesh/:cluster/connect?member=ID   a member's WebSocket: records pushed, datagrams
 *   GET /v1/mesh/:cluster/records             the cluster's sealed records as JSON
 *   PUT /v1/mesh/:cluster/records/:member     publish a sealed record (raw body) over HTTP
 *
 * The cluster id is the capability: a client that knows it may do all three. What it learns is
 * sealed records; what it can publish is dropped by members unless sealed with the token's key.
 * Every route counts against the client address's rate limit (MESH_RATE_LIMIT), as the public
 * discovery service limits its clients.
 *
 * Mesh clusters have nothing to do with SideroLink networks: other paths, other objects.
 */
import type { Context, Hono } from "hono";
import { isHexId, parseId } from "../../shared/mesh/cluster.ts";
import {
  MEMBER_QUERY,
  MESH_CONNECT_ROUTE,
  MESH_RECORD_ROUTE,
  MESH_RECORDS_ROUTE,
} from "../../shared/mesh/frame.ts";
import { MAX_SEALED_RECORD_SIZE, MIN_SEALED_RECORD_SIZE } from "../../shared/mesh/record.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { HttpError, InvalidInputError } from "../app/http-error.ts";
import type { RateLimit, RateLimiter } from "../app/rate-limit.ts";
import { formatObserved, type MeshCluster, observedAddress } from "./cluster.ts";

/** About what the public discovery service allows a client address: 15 requests/s, burst 60. */
export const MESH_RATE_LIMIT: RateLimit = { burst: 60, perSecond: 15 };

export type MeshAdmission =
  | { readonly member: Uint8Array; readonly observed: Uint8Array; readonly address: string }
  | { readonly refuse: { readonly code: number; readonly reason: string } };

/** One cluster's live state on a runtime. */
export interface MeshRuntime {
  readonly cluster: MeshCluster;
  /** Completes the upgrade; an admitted socket joins the cluster, a refused one is closed. */
  acceptWebSocket(request: Request, admission: MeshAdmission): Response | Promise<Response>;
}

export interface MeshDirectory {
  /** Requests per client address, shared by the routes and the clusters' PUBLISH frames. */
  readonly limiter: RateLimiter;
  /** The runtime of cluster `id` (64 hex digits, checked), created on first use. */
  cluster(id: string): MeshRuntime | Promise<MeshRuntime>;
}

export interface MeshRouteOptions {
  readonly directory: MeshDirectory;
  readonly clientAddress: (c: Context) => string | undefined;
  readonly now: () => number;
}

export function registerMeshRoutes(app: Hono, options: MeshRouteOptions): void {
  const { directory, clientAddress, now } = options;
  const { limiter } = directory;

  app.use("/v1/mesh/*", async (c, next) => {
    const address = clientAddress(c);
    // Without a known address (workerd run locally), no shared bucket any caller could drain.
    const wait = address === undefined ? 0 : limiter.take(address, now());
    if (wait > 0) {
      c.header("retry-after", String(Math.ceil(wait / 1000)));
      return c.json({ error: `too many mesh requests from ${address}; retry in ${wait} ms` }, 429);
    }
    return next();
  });

  app.get(MESH_CONNECT_ROUTE, async (c) => {
    if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
      return c.json({ error: "this route takes a WebSocket upgrade (Upgrade: websocket)" }, 426);
    }
    const runtime = await directory.cluster(clusterParam(c));
    const member = idParam(c.req.query(MEMBER_QUERY), `query parameter ${MEMBER_QUERY}`);
    const { cluster } = runtime;
    if (cluster.connected >= cluster.limits.maxRecordsPerCluster && !cluster.isConnected(member)) {
      return runtime.acceptWebSocket(c.req.raw, {
        refuse: {
          code: CloseCode.TryAgainLater,
          reason: `mesh cluster holds its limit of ${cluster.limits.maxRecordsPerCluster} members; try again later`,
        },
      });
    }
    const address = clientAddress(c) ?? "";
    return runtime.acceptWebSocket(c.req.raw, {
      member,
      observed: observedAddress(address || undefined),
      address,
    });
  });

  app.get(MESH_RECORDS_ROUTE, async (c) => {
    const { cluster } = await directory.cluster(clusterParam(c));
    return c.json({
      records: cluster.records().map((record) => ({
        member: record.member,
        observed: formatObserved(record.observed),
        expiresAt: new Date(record.expiresAt).toISOString(),
        record: bytesToBase64(record.record),
      })),
    });
  });

  app.put(MESH_RECORD_ROUTE, async (c) => {
    const runtime = await directory.cluster(clusterParam(c));
    const member = idParam(c.req.param("member"), "member in the path");
    const body = new Uint8Array(await c.req.arrayBuffer());
    if (body.length < MIN_SEALED_RECORD_SIZE || body.length > MAX_SEALED_RECORD_SIZE) {
      throw new InvalidInputError(
        `sealed record of ${body.length} bytes; expected ${MIN_SEALED_RECORD_SIZE}-${MAX_SEALED_RECORD_SIZE}`,
      );
    }
    const address = clientAddress(c) ?? "";
    const refusal = runtime.cluster.publish(member, observedAddress(address || undefined), body);
    if (refusal === "full") {
      throw new HttpError(
        409,
        `mesh cluster holds its limit of ${runtime.cluster.limits.maxRecordsPerCluster} records`,
      );
    }
    return c.body(null, 204);
  });
}

function clusterParam(c: Context): string {
  const id = c.req.param("cluster") ?? "";
  if (!isHexId(id)) {
    throw new InvalidInputError(
      `cluster id ${JSON.stringify(id.slice(0, 80))} is not 64 lowercase hex digits (SHA-256 of the cluster token)`,
    );
  }
  return id;
}

function idParam(text: string | undefined, field: string): Uint8Array {
  try {
    return parseId(text ?? "", field);
  } catch (cause) {
    throw new InvalidInputError((cause as Error).message, { cause });
  }
}

function bytesToBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
