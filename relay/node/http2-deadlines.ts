/**
 * Time limits on HTTP/2 sessions and streams: a session with no stream open closes after the
 * idle timeout; a Provision call that has not been answered by its deadline (a client that sent
 * headers and never ended its body) gets DEADLINE_EXCEEDED; and a stream whose response is
 * complete is reset even when the client keeps its half open. None of them then holds memory
 * for as long as the client likes.
 */
import http2 from "node:http2";
import type { ConnectionLimits } from "./connection-limits.ts";

/** The one unary method on HTTP/2; its path is the same for gRPC, gRPC-web and Connect. */
export const PROVISION_PATH = "/sidero.link.ProvisionService/Provision";

const GRPC_DEADLINE_EXCEEDED = "4";
/** Connect protocol: deadline_exceeded is sent as HTTP 504. */
const CONNECT_DEADLINE_STATUS = 504;

type Handler = (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => void;

/** Closes `session` (GOAWAY) once it has had no stream open for `idleMs`. */
export function closeWhenIdle(session: http2.ServerHttp2Session, idleMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    timer = setTimeout(() => session.close(), idleMs);
    timer.unref();
  };
  session.on("stream", (stream: http2.ServerHttp2Stream) => {
    open++;
    clearTimeout(timer);
    stream.once("close", () => {
      open--;
      if (open === 0 && !session.closed) arm();
    });
  });
  session.once("close", () => clearTimeout(timer));
  arm();
}

/**
 * Wraps the HTTP/2 request handler: Provision calls end by their deadline, and every stream is
 * reset once its response is complete.
 */
export function withStreamDeadlines(
  handler: Handler,
  limits: Pick<ConnectionLimits, "provisionDeadlineMs">,
): Handler {
  const deadlineMs = limits.provisionDeadlineMs;
  return (request, response) => {
    if (request.url?.split("?", 1)[0] === PROVISION_PATH) {
      const timer = setTimeout(() => expire(request, response, deadlineMs), deadlineMs);
      timer.unref();
      response.stream.once("close", () => clearTimeout(timer));
    }
    // RFC 9113 section 8.1: after a complete response the server may reset the stream with
    // NO_ERROR; without it a client that never ends its half keeps the stream (and its slot).
    // gRPC responses end with trailers: the compat layer submits them on "wantTrailers" (its
    // listener runs first), and a reset submitted after them is sent after them.
    response.stream.once("wantTrailers", () => {
      setImmediate(() => {
        if (!response.stream.closed) response.stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
    });
    handler(request, response);
  };
}

/** Answers a call past its deadline in its own protocol, then resets the stream. */
function expire(
  request: http2.Http2ServerRequest,
  response: http2.Http2ServerResponse,
  deadlineMs: number,
): void {
  const { stream } = response;
  if (stream.destroyed) return;
  const message = `no complete request within ${deadlineMs} ms`;
  if (!stream.headersSent) {
    const contentType = String(request.headers["content-type"] ?? "");
    if (contentType.startsWith("application/grpc")) {
      stream.respond(
        {
          ":status": 200,
          "content-type": contentType,
          "grpc-status": GRPC_DEADLINE_EXCEEDED,
          "grpc-message": encodeURIComponent(message),
        },
        { endStream: true },
      );
    } else {
      stream.respond(
        { ":status": CONNECT_DEADLINE_STATUS, "content-type": "application/json" },
        { endStream: false },
      );
      stream.end(JSON.stringify({ code: "deadline_exceeded", message }));
    }
  }
  // The client's half is still open: RST_STREAM frees the stream on both sides.
  stream.close(http2.constants.NGHTTP2_CANCEL);
}
