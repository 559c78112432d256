/**
 * `sidero.link.WireGuardOverGRPCService/CreateStream` on Node's HTTP/2: the stream Talos opens
 * when `grpc_peer_addr_port` is set. One PeerPacket carries one datagram each way. The
 * `x-siderolink-ipv6-addr` metadata names the peer; since the path names no network, the
 * virtual address (random in a prefix all networks share) finds it.
 *
 * Served on the HTTP/2 stream itself rather than through Connect: the response headers go out
 * at once, every batch of datagrams the hub hands over becomes one HTTP/2 write of many gRPC
 * messages, and incoming DATA chunks are split into datagrams without a protobuf object or a
 * copy each (shared/siderolink/peer-packet-stream.ts). docs/benchmarks.md (S7) has the figures.
 */
import http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import {
  encodedPeerPacketBytes,
  encodePeerPackets,
  PeerPacketError,
  PeerPacketReader,
} from "../../shared/siderolink/peer-packet-stream.ts";
import { canonicalPeerAddress, PEER_ADDRESS_HEADER } from "../../shared/siderolink/relay-api.ts";
import { CloseCode, REASON_PEER_NOT_ALLOWED } from "../../shared/tunnel/frame.ts";
import { encodeGrpcMessage, grpcStatusOfClose } from "../../shared/tunnel/grpc-status.ts";
import { logStream } from "../app/log.ts";
import type { NetworkRuntime } from "../app/runtime.ts";
import type { HubSocket } from "../hub/socket.ts";

/** gRPC status 0: the call ended normally (Connect's Code has no name for it). */
const GRPC_OK = 0;

export const CREATE_STREAM_PATH = "/sidero.link.WireGuardOverGRPCService/CreateStream";

/** Finds the network runtime whose peer owns a virtual address. */
export type PeerLocator = (virtualAddress: string) => Promise<NetworkRuntime | undefined>;
/** Whether a stream for this peer may open now (the relay's tunnel cap). */
export type TunnelAdmission = (runtime: NetworkRuntime, virtualAddress: string) => boolean;

/** Serves one CreateStream call on its HTTP/2 stream. */
export type CreateStreamHandler = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => void;

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } = http2.constants;

/**
 * HTTP/2 flow control sized for a tunnel: with the 64 KiB defaults a node stream at a few
 * hundred Mbit/s waits for a WINDOW_UPDATE every millisecond or so, and stalls whenever the
 * event loop is busy. A stream may have 1 MiB in flight, a connection 4 MiB; frames up to
 * 64 KiB carry a whole coalesced write in few frames.
 */
export const TUNNEL_HTTP2_SETTINGS: http2.Settings = {
  initialWindowSize: 1024 * 1024,
  maxFrameSize: 64 * 1024,
};
/** Receive window of a whole HTTP/2 connection (session.setLocalWindowSize). */
export const TUNNEL_SESSION_WINDOW_BYTES = 4 * 1024 * 1024;

export interface GrpcStreamOptions {
  /**
   * A stream whose first PeerPacket has not arrived this long after it opened is closed with
   * DEADLINE_EXCEEDED: one that never speaks would hold its slot.
   */
  readonly firstMessageDeadlineMs?: number;
  readonly now?: () => number;
}

export function createWireGuardOverGrpc(
  locate: PeerLocator,
  admit: TunnelAdmission = () => true,
  options: GrpcStreamOptions = {},
): CreateStreamHandler {
  const now = options.now ?? Date.now;
  return (stream, headers) => {
    const contentType = String(headers[HTTP2_HEADER_CONTENT_TYPE] ?? "");
    if (!/^application\/grpc(\+proto)?(;|$)/.test(contentType)) {
      respondStatus(
        stream,
        Code.InvalidArgument,
        `content-type ${JSON.stringify(contentType)}: CreateStream takes application/grpc`,
      );
      return;
    }
    const header = headers[PEER_ADDRESS_HEADER];
    const virtualAddress = canonicalPeerAddress(typeof header === "string" ? header : "");
    // Until the lookup answers, the client's first packets wait in the stream's buffer.
    stream.pause();
    void (virtualAddress ? locate(virtualAddress) : Promise.resolve(undefined)).then(
      (runtime) => {
        if (stream.destroyed) return;
        if (!virtualAddress || !runtime) {
          respondStatus(stream, Code.PermissionDenied, REASON_PEER_NOT_ALLOWED);
          return;
        }
        if (!admit(runtime, virtualAddress)) {
          respondStatus(
            stream,
            Code.ResourceExhausted,
            "relay holds its limit of tunnels; try again later",
          );
          return;
        }
        serveTunnel(stream, runtime, virtualAddress, now(), options.firstMessageDeadlineMs);
      },
      (error: unknown) => {
        console.error("relay: CreateStream lookup failed", error);
        respondStatus(stream, Code.Unavailable, "the relay could not look the peer up; retry");
      },
    );
  };
}

function serveTunnel(
  stream: http2.ServerHttp2Stream,
  runtime: NetworkRuntime,
  virtualAddress: string,
  connectedAt: number,
  firstMessageDeadlineMs: number | undefined,
): void {
  const { hub } = runtime;
  // The compatibility layer's response (Connect serves every other path through it) would
  // answer wantTrailers with empty trailers; this stream sends its own status.
  stream.removeAllListeners("wantTrailers");
  // Headers at once: the client counts the stream open before the first packet arrives.
  stream.respond(
    { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc" },
    { waitForTrailers: true },
  );
  const socket = new GrpcHubSocket(stream);
  const gone = logStream(runtime.log, socket, {
    network: runtime.name,
    role: "node",
    virtualAddress,
  });
  const silent =
    firstMessageDeadlineMs === undefined
      ? undefined
      : setTimeout(
          () =>
            socket.close(
              CloseCode.LivenessTimeout,
              `no first message within ${firstMessageDeadlineMs} ms`,
            ),
          firstMessageDeadlineMs,
        );
  hub.attach(socket, { v: 1, role: "node", virtualAddress, connectedAt });
  const reader = new PeerPacketReader((datagrams, count) =>
    hub.nodeDatagrams(socket, datagrams, count),
  );
  stream.on("data", (chunk: Buffer) => {
    clearTimeout(silent);
    if (!socket.writable) return;
    try {
      reader.push(chunk);
    } catch (error) {
      if (!(error instanceof PeerPacketError)) throw error;
      socket.close(error.tooBig ? CloseCode.TooBig : CloseCode.Malformed, error.message);
    }
  });
  // The client half-closed: a gRPC call ends with the server's status, OK here.
  stream.on("end", () => {
    if (reader.partial)
      socket.close(CloseCode.Malformed, "the stream ended inside a PeerPacket message");
    else socket.end(GRPC_OK, "");
  });
  stream.on("close", () => {
    clearTimeout(silent);
    socket.end(GRPC_OK, "");
    gone(CloseCode.Normal, "gRPC stream ended");
    hub.closed(socket);
  });
  stream.on("error", () => undefined);
  stream.resume();
}

/**
 * HubSocket over a CreateStream's HTTP/2 stream: each batch the hub sends is encoded into one
 * buffer (one gRPC message per datagram) and written at once, so HTTP/2 fills its DATA frames
 * from it; the stream's own write buffer is the queue the hub's high-water mark watches.
 */
class GrpcHubSocket implements HubSocket {
  readonly #stream: http2.ServerHttp2Stream;
  #ended = false;

  constructor(stream: http2.ServerHttp2Stream) {
    this.#stream = stream;
  }

  get writable(): boolean {
    return !this.#ended && !this.#stream.destroyed;
  }

  get bufferedAmount(): number {
    return this.#stream.writableLength;
  }

  sendDatagrams(
    datagrams: readonly Uint8Array[],
    _tags: readonly Uint8Array[] | undefined,
    count: number,
  ): void {
    if (!this.writable) return;
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += encodedPeerPacketBytes(datagrams[i].length);
    // A fresh buffer per batch: the stream holds it until the kernel has taken it.
    const out = Buffer.allocUnsafe(bytes);
    encodePeerPackets(datagrams, count, out);
    this.#stream.write(out);
  }

  /** A node stream gets no control frames, and gRPC has no text pings to answer. */
  sendControl(): void {}

  close(code: number, reason: string): void {
    this.end(grpcStatusOfClose(code), reason);
  }

  persist(): void {}

  /** Ends the call with a gRPC status in its trailers, once. */
  end(status: Code | typeof GRPC_OK, message: string): void {
    if (this.#ended) return;
    this.#ended = true;
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) return;
    stream.once("wantTrailers", () => {
      stream.sendTrailers(statusTrailers(status, message));
      // RFC 9113 section 8.1: with the response complete, reset the stream (NO_ERROR), or a
      // client that never ends its half keeps the stream and its slot.
      setImmediate(() => {
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
    });
    stream.end();
  }
}

/** Answers a call with its status and no messages ("Trailers-Only"). */
function respondStatus(stream: http2.ServerHttp2Stream, status: Code, message: string): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond(
    {
      [HTTP2_HEADER_STATUS]: 200,
      [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
      ...statusTrailers(status, message),
    },
    { endStream: true },
  );
}

function statusTrailers(status: Code | typeof GRPC_OK, message: string): http2.OutgoingHttpHeaders {
  return message === ""
    ? { "grpc-status": String(status) }
    : { "grpc-status": String(status), "grpc-message": encodeGrpcMessage(message) };
}
