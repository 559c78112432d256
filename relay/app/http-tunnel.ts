/**
 * The HTTP-only tunnel's routes (shared/tunnel/http-tunnel.ts), on every runtime: gRPC-web
 * `Receive` (the downlink, one long response) and `Send` (the client's batches, one POST each)
 * under the node's tunnel path and the uplink's path.
 *
 * Why gRPC-web and not a framing of our own: its 5-byte envelope costs no more than a length
 * prefix, its trailer block carries the close code and reason the way a WebSocket close does, and
 * it is a protocol proxies, load balancers and debugging tools already know (nginx, Envoy and
 * Cloudflare pass `application/grpc-web+proto` through as an opaque stream, and any gRPC-web
 * client can call the service from the schema in the shared module).
 *
 * A Receive is admitted exactly like the WebSocket of the same path (tunnel.ts: the node's
 * provisioned address, or the network's admin secret, and the tunnel cap) and its response is a
 * HubSocket (relay/hub/http-downlink.ts) in the same hub: replacement, liveness, limits, counted
 * drops and isolation are the hub's, whatever the transport. Its session id is unguessable and
 * bound to that credential: a Send must present both, on the same network and path, or it is
 * answered NotFound without touching any stream.
 */
import type { Context, Hono } from "hono";
import {
  canonicalPeerAddress,
  PEER_ADDRESS_HEADER,
  TUNNEL_ROUTE,
  UPLINK_ROUTE,
} from "../../shared/siderolink/relay-api.ts";
import { CloseCode, PING_TEXT } from "../../shared/tunnel/frame.ts";
import {
  encodeGrpcMessage,
  GrpcStatus,
  grpcStatusOfClose,
} from "../../shared/tunnel/grpc-status.ts";
import {
  CLOSE_CODE_TRAILER,
  decodeFramesRequest,
  GRPC_WEB_CONTENT_TYPE,
  HttpTunnelError,
  MAX_SEND_BODY_BYTES,
  MAX_SENDS_IN_FLIGHT,
  RECEIVE_METHOD_PATH,
  SEND_METHOD_PATH,
  SEQUENCE_HEADER,
  SESSION_HEADER,
} from "../../shared/tunnel/http-tunnel.ts";
import { createHttpDownlink, type HttpDownlink } from "../hub/http-downlink.ts";
import type { NetworkRuntime, RelayDirectory } from "./runtime.ts";
import { bearerToken, constantTimeEqual, randomSecret } from "./secrets.ts";
import { admitNodeStream, admitUplinkStream, type StreamAdmission } from "./tunnel.ts";

type StreamKind = "tunnel" | "uplink";

interface Session {
  readonly kind: StreamKind;
  readonly runtime: NetworkRuntime;
  /** The node's canonical virtual address, or the admin secret the uplink presented. */
  readonly credential: string;
  readonly downlink: HttpDownlink;
  /** The SEQUENCE_HEADER value the next Send to switch carries. */
  nextSequence: number;
  /** Sends that arrived ahead of an earlier one, by sequence number, waiting for it. */
  readonly held: Map<number, HeldSend>;
}

/**
 * A Send that overtook an earlier one (they travel on separate connections). It is answered only
 * once it is switched: the client counts a Send as in flight until its answer, so answering early
 * would let it send past MAX_SENDS_IN_FLIGHT while the earlier one is still on its way.
 */
interface HeldSend {
  readonly body: Uint8Array;
  readonly answer: (response: Response) => void;
}

/** Bytes of randomness in a session id. */
const SESSION_ID_BYTES = 16;

export function registerHttpTunnelRoutes(
  app: Hono,
  directory: RelayDirectory,
  now: () => number,
  maxTunnels: number,
): void {
  const sessions = new Map<string, Session>();
  const admit: Record<StreamKind, (c: Context) => Promise<StreamAdmission>> = {
    tunnel: (c) => admitNodeStream(c, directory, now, maxTunnels),
    uplink: (c) => admitUplinkStream(c, directory, now),
  };

  for (const [kind, route] of [
    ["tunnel", TUNNEL_ROUTE],
    ["uplink", UPLINK_ROUTE],
  ] as const) {
    app.post(`${route}${RECEIVE_METHOD_PATH}`, async (c) => {
      await c.req.raw.body?.cancel();
      const { runtime, admission } = await admit[kind](c);
      if ("refuse" in admission) {
        const { code, reason } = admission.refuse;
        return trailersOnly(grpcStatusOfClose(code), reason, code);
      }
      const id = randomSecret(SESSION_ID_BYTES);
      const held = new Map<number, HeldSend>();
      const downlink = createHttpDownlink({
        onGone: () => {
          sessions.delete(id);
          runtime.hub.closed(downlink);
          for (const send of held.values()) {
            send.answer(
              trailersOnly(
                GrpcStatus.Unavailable,
                "the stream ended before the Sends ahead of this one arrived",
              ),
            );
          }
          held.clear();
        },
      });
      const credential =
        admission.attach.role === "node"
          ? admission.attach.virtualAddress
          : (bearerToken(c.req.header("authorization")) ?? "");
      sessions.set(id, {
        kind,
        runtime,
        credential,
        downlink,
        nextSequence: 0,
        held,
      });
      runtime.hub.attach(downlink, admission.attach);
      return new Response(downlink.body, {
        status: 200,
        headers: {
          "content-type": GRPC_WEB_CONTENT_TYPE,
          // Proxies must pass each message on as it comes: nginx reads X-Accel-Buffering,
          // caches and compressing middleboxes honour no-transform.
          "x-accel-buffering": "no",
          "cache-control": "no-cache, no-store, no-transform",
          [SESSION_HEADER]: id,
        },
      });
    });

    app.post(`${route}${SEND_METHOD_PATH}`, async (c) => {
      const session = sessions.get(c.req.header(SESSION_HEADER) ?? "");
      if (
        !session ||
        session.kind !== kind ||
        session.runtime.name !== c.req.param("network") ||
        !presents(c, session)
      ) {
        await c.req.raw.body?.cancel();
        return trailersOnly(
          GrpcStatus.NotFound,
          "no such session for this stream and credential: open a new Receive",
        );
      }
      const { runtime, downlink } = session;
      const body = await readBody(c.req.raw, MAX_SEND_BODY_BYTES);
      if (body === undefined) {
        const reason = `frame too big: a Send carries at most ${MAX_SEND_BODY_BYTES} bytes`;
        refuse(runtime, downlink, CloseCode.TooBig, reason);
        return trailersOnly(GrpcStatus.InvalidArgument, reason, CloseCode.TooBig);
      }
      const sequence = c.req.header(SEQUENCE_HEADER);
      if (sequence === undefined) return switchBody(session, body);
      const number = Number(sequence);
      const ahead = number - session.nextSequence;
      if (
        !Number.isInteger(number) ||
        ahead < 0 ||
        ahead >= MAX_SENDS_IN_FLIGHT ||
        session.held.has(number)
      ) {
        const reason = `Send ${sequence} out of order: expected ${session.nextSequence} (at most ${MAX_SENDS_IN_FLIGHT} in flight, each number once)`;
        refuse(runtime, downlink, CloseCode.Malformed, reason);
        return trailersOnly(GrpcStatus.InvalidArgument, reason, CloseCode.Malformed);
      }
      if (ahead > 0) {
        return new Promise<Response>((answer) => session.held.set(number, { body, answer }));
      }
      const answer = switchBody(session, body);
      session.nextSequence++;
      for (let next = session.held.get(session.nextSequence); next; ) {
        session.held.delete(session.nextSequence);
        session.nextSequence++;
        next.answer(switchBody(session, next.body));
        next = session.held.get(session.nextSequence);
      }
      return answer;
    });
  }
}

/** Switches the frames of one Send body through the session's hub; the Send's answer. */
function switchBody(session: Session, body: Uint8Array): Response {
  const { runtime, downlink } = session;
  const frames = FRAMES;
  let count: number;
  try {
    count = decodeFramesRequest(body, frames);
  } catch (error) {
    if (!(error instanceof HttpTunnelError)) throw error;
    refuse(runtime, downlink, CloseCode.Malformed, error.message);
    return trailersOnly(GrpcStatus.InvalidArgument, error.message, CloseCode.Malformed);
  }
  if (count === 0) runtime.hub.message(downlink, PING_TEXT);
  for (let i = 0; i < count && downlink.writable; i++) runtime.hub.message(downlink, frames[i]);
  frames.length = 0;
  return trailersOnly(GrpcStatus.Ok, "");
}

/** Views of the frames of the Send being handled; each request is handled in one go. */
const FRAMES: Uint8Array[] = [];

function presents(c: Context, session: Session): boolean {
  if (session.kind === "tunnel") {
    const value = c.req.header(PEER_ADDRESS_HEADER) ?? c.req.query(PEER_ADDRESS_HEADER) ?? "";
    return canonicalPeerAddress(value) === session.credential;
  }
  const secret = bearerToken(c.req.header("authorization"));
  return secret !== undefined && constantTimeEqual(secret, session.credential);
}

/** Ends a session for a body that breaks the framing, as the hub ends a WebSocket for one. */
function refuse(runtime: NetworkRuntime, downlink: HttpDownlink, code: number, reason: string) {
  runtime.hub.metrics.malformedFrames++;
  runtime.hub.closed(downlink);
  downlink.close(code, reason);
}

/** A gRPC-web answer with no message: the status in the headers. */
function trailersOnly(status: number, message: string, closeCode?: number): Response {
  const headers: Record<string, string> = {
    "content-type": GRPC_WEB_CONTENT_TYPE,
    "cache-control": "no-cache, no-store, no-transform",
    "grpc-status": String(status),
    "grpc-message": encodeGrpcMessage(message),
  };
  if (closeCode !== undefined) headers[CLOSE_CODE_TRAILER] = String(closeCode);
  return new Response(null, { status: 200, headers });
}

/** The whole body, or undefined once it passes `limit` bytes (the rest is not read). */
async function readBody(request: Request, limit: number): Promise<Uint8Array | undefined> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) {
    await request.body?.cancel();
    return undefined;
  }
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const body = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}
