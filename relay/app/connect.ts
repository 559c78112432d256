/**
 * Connect's router served through fetch Request/Response, so Provision answers Connect and
 * gRPC-web on any runtime with fetch (workerd included).
 */
import { fromBinary, fromJson } from "@bufbuild/protobuf";
import { type ConnectRouter, createConnectRouter, createContextValues } from "@connectrpc/connect";
import {
  createEnvelopeReadableStream,
  type EnvelopedMessage,
  universalServerRequestFromFetch,
  universalServerResponseToFetch,
} from "@connectrpc/connect/protocol";
import {
  ProvisionRequestSchema,
  ProvisionService,
} from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseJoinToken } from "../../shared/siderolink/relay-api.ts";
import { readBounded } from "./bounded-body.ts";
import { clientAddressKey } from "./limits.ts";
import type { ProvisionHandler } from "./provision.ts";

/** The largest Provision request read anywhere (a real one is a few hundred bytes). */
export const MAX_PROVISION_REQUEST_BYTES = 64 * 1024;

/** Registers the relay's portable services on a Connect router (Node adds CreateStream). */
export function registerProvision(
  router: ConnectRouter,
  provision: ProvisionHandler,
): ConnectRouter {
  return router.service(ProvisionService, provision.impl);
}

/**
 * Plain gRPC puts its status in HTTP trailers, which a fetch Response cannot carry: served
 * through fetch it would end with no status at all. Refused instead, in the trailers-only form
 * (status in the headers): UNIMPLEMENTED with what to use.
 */
const PLAIN_GRPC = /^application\/grpc(?:$|[+;])/i;
const PLAIN_GRPC_REFUSAL = new Headers({
  "content-type": "application/grpc",
  "grpc-status": "12",
  "grpc-message": encodeURIComponent(
    "plain gRPC needs HTTP/2 trailers, which this endpoint cannot send: use gRPC-web or Connect, or the Node relay over HTTP/2",
  ),
});

/** A fetch handler told where the request came from (for per-client limits). */
export type FetchRoute = (request: Request, clientAddress: string | undefined) => Promise<Response>;

/** Fetch handlers by request path, e.g. "/sidero.link.ProvisionService/Provision". */
export function createFetchRoutes(provision: ProvisionHandler): Map<string, FetchRoute> {
  const router = registerProvision(
    createConnectRouter({ readMaxBytes: MAX_PROVISION_REQUEST_BYTES }),
    provision,
  );
  return new Map(
    router.handlers.map((handler): [string, FetchRoute] => [
      handler.requestPath,
      async (request, clientAddress) => {
        if (PLAIN_GRPC.test(request.headers.get("content-type") ?? "")) {
          await request.body?.cancel();
          return new Response(null, { status: 200, headers: PLAIN_GRPC_REFUSAL });
        }
        const universal = universalServerRequestFromFetch(request, {});
        universal.contextValues = createContextValues().set(clientAddressKey, clientAddress);
        return universalServerResponseToFetch(await handler(universal));
      },
    ]),
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
    let body = await readBounded(request.clone(), MAX_PROVISION_REQUEST_BYTES);
    if (!body) return undefined;
    if (contentType.startsWith("application/grpc-web-text")) {
      body = Uint8Array.from(atob(new TextDecoder().decode(body)), (c) => c.charCodeAt(0));
    }
    if (contentType.startsWith("application/grpc")) {
      // gRPC and gRPC-web wrap the request in an envelope; a compressed one (flags other than
      // 0) is not read here.
      const envelope = await firstEnvelope(body);
      if (envelope === undefined || envelope.flags !== 0) return undefined;
      body = envelope.data;
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

/** The first enveloped message of a gRPC or gRPC-web body, read by connect-es's own decoder. */
async function firstEnvelope(body: Uint8Array): Promise<EnvelopedMessage | undefined> {
  const bytes = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(body);
      controller.close();
    },
  });
  const reader = createEnvelopeReadableStream(bytes).getReader();
  const { value } = await reader.read();
  await reader.cancel();
  return value;
}
