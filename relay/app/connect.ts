/**
 * Connect's router served through fetch Request/Response, so Provision answers Connect and
 * gRPC-web on any runtime with fetch (workerd included).
 */
import { fromBinary, fromJson } from "@bufbuild/protobuf";
import { type ConnectRouter, createConnectRouter } from "@connectrpc/connect";
import { createFetchHandler } from "@connectrpc/connect/protocol";
import {
  ProvisionRequestSchema,
  ProvisionService,
} from "../../shared/gen/sidero/link/provision_pb.ts";
import type { ProvisionHandler } from "./provision.ts";
import { parseJoinToken } from "./secrets.ts";

/** The largest Provision request read anywhere (a real one is a few hundred bytes). */
export const MAX_PROVISION_REQUEST_BYTES = 64 * 1024;

/** Registers the relay's portable services on a Connect router (Node adds CreateStream). */
export function registerProvision(
  router: ConnectRouter,
  provision: ProvisionHandler,
): ConnectRouter {
  return router.service(ProvisionService, provision.impl);
}

/** Fetch handlers by request path, e.g. "/sidero.link.ProvisionService/Provision". */
export function createFetchRoutes(
  provision: ProvisionHandler,
): Map<string, (request: Request) => Promise<Response>> {
  const router = registerProvision(
    createConnectRouter({ readMaxBytes: MAX_PROVISION_REQUEST_BYTES }),
    provision,
  );
  return new Map(
    router.handlers.map((handler) => [handler.requestPath, createFetchHandler(handler)]),
  );
}

/**
 * The network a Provision request's join token names, read from a clone of the request
 * (Connect proto or JSON, gRPC-web, gRPC), so an edge can route it before any network state is
 * touched. Undefined when the request cannot be read or names none.
 */
export async function provisionNetwork(request: Request): Promise<string | undefined> {
  const contentType = (request.headers.get("content-type") ?? "").toLowerCase();
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > MAX_PROVISION_REQUEST_BYTES) return undefined;
  try {
    let body = new Uint8Array(await request.clone().arrayBuffer());
    if (body.length > MAX_PROVISION_REQUEST_BYTES) return undefined;
    if (contentType.startsWith("application/grpc-web-text")) {
      body = Uint8Array.from(atob(new TextDecoder().decode(body)), (c) => c.charCodeAt(0));
    }
    if (contentType.startsWith("application/grpc")) {
      // Envelope: u8 flags, u32 length, message. Compressed messages are not read here.
      if (body.length < 5 || body[0] !== 0) return undefined;
      const size = ((body[1] << 24) >>> 0) + (body[2] << 16) + (body[3] << 8) + body[4];
      body = body.subarray(5, 5 + size);
    }
    // Connect's unary JSON is application/json; gRPC and gRPC-web name it with a +json suffix.
    const json = contentType.startsWith("application/json") || /^[^;]*\+json/.test(contentType);
    const joinToken = json
      ? fromJson(ProvisionRequestSchema, JSON.parse(new TextDecoder().decode(body))).joinToken
      : fromBinary(ProvisionRequestSchema, body).joinToken;
    return parseJoinToken(joinToken ?? "")?.network;
  } catch {
    return undefined;
  }
}
