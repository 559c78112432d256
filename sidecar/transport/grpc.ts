/**
 * The node stream as Talos opens it: `sidero.link.WireGuardOverGRPCService/CreateStream`, a
 * bidirectional gRPC stream over HTTP/2 whose PEER_ADDRESS_HEADER metadata carries
 * `grpc_peer_addr_port` (shared/siderolink/relay-api.ts), one datagram per PeerPacket.
 *
 * As in siderolink's wggrpc client, only the relay's own `PermissionDenied "peer not allowed"`
 * and `Aborted "peer replaced"` end the stream for good (the caller provisions again); any other
 * ending (a reset, EOF, another status) reopens the stream at once on the next outgoing datagram,
 * so a restarted relay is back as soon as WireGuard sends anything.
 *
 * Driven on node:http2 directly (docs/benchmarks.md, S7, has the comparison with connect-node):
 * each batch from the device is framed by hand into one buffer (shared/siderolink/
 * peer-packet-stream.ts) and written at once, and each DATA chunk from the relay is split into
 * datagrams without a copy. While the stream opens, outgoing datagrams are held (held-datagrams.ts);
 * once open, the stream's own buffer is the queue, capped at HIGH_WATER_BYTES.
 */
import http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import type { ApiUrl } from "../../shared/siderolink/api-url.ts";
import {
  encodedPeerPacketBytes,
  encodePeerPackets,
  PeerPacketError,
  PeerPacketReader,
} from "../../shared/siderolink/peer-packet-stream.ts";
import { PEER_ADDRESS_HEADER } from "../../shared/siderolink/relay-api.ts";
import { REASON_PEER_NOT_ALLOWED, REASON_PEER_REPLACED } from "../../shared/tunnel/frame.ts";
import { http2ProxyConnection, type ProxySettings } from "../net/proxy.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";
import { HeldDatagrams } from "./held-datagrams.ts";
import {
  createTransportStats,
  HIGH_WATER_BYTES,
  NODE_TUNNEL_WORDS,
  type NodeTransport,
  type TransportHandlers,
  type TransportState,
} from "./transport.ts";

/** HTTP/2 PING cadence: a dead connection is noticed within two intervals. */
const PING_INTERVAL_MS = 15_000;
const CREATE_STREAM_PATH = "/sidero.link.WireGuardOverGRPCService/CreateStream";
/** Receive windows sized for a tunnel (the relay sets the same; see relay/node/grpc-stream.ts). */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 4 * 1024 * 1024;
const MAX_FRAME_BYTES = 64 * 1024;

export interface GrpcTransportOptions extends TransportHandlers {
  readonly api: ApiUrl;
  readonly peerAddrPort: string;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
}

/** How one stream ended: a gRPC status from the relay, or a connection failure. */
interface Ending {
  readonly code: number | undefined;
  readonly message: string;
}

export function createGrpcNodeTransport(options: GrpcTransportOptions): NodeTransport {
  const { log } = options;
  const words = options.words ?? NODE_TUNNEL_WORDS;
  const stats = createTransportStats();
  const held = new HeldDatagrams(stats);
  let state: TransportState = "connecting";
  let lastError: string | undefined;
  let session: http2.ClientHttp2Session | undefined;
  let stream: http2.ClientHttp2Stream | undefined;
  let ping: ReturnType<typeof setInterval> | undefined;

  const deliver = (datagrams: readonly Uint8Array[], count: number): void => {
    stats.rxDatagrams += count;
    for (let i = 0; i < count; i++) stats.rxBytes += datagrams[i].length;
    options.onDatagrams(datagrams);
  };

  const connectSession = (): http2.ClientHttp2Session => {
    if (session && !session.closed && !session.destroyed) return session;
    const settings = { initialWindowSize: STREAM_WINDOW_BYTES, maxFrameSize: MAX_FRAME_BYTES };
    const secure = options.api.tls ? { ...tlsOptions(options.tls), ALPNProtocols: ["h2"] } : {};
    const createConnection = http2ProxyConnection(options.proxy, options.api.origin, secure);
    const opened = http2.connect(options.api.origin, {
      settings,
      ...secure,
      ...(createConnection ? { createConnection } : {}),
    });
    opened.on("connect", () => opened.setLocalWindowSize(SESSION_WINDOW_BYTES));
    opened.on("error", () => undefined);
    opened.on("close", () => {
      if (session === opened) {
        session = undefined;
        clearInterval(ping);
      }
    });
    clearInterval(ping);
    ping = setInterval(() => {
      const timeout = setTimeout(() => opened.destroy(), PING_INTERVAL_MS);
      if (!opened.ping(() => clearTimeout(timeout))) clearTimeout(timeout);
    }, PING_INTERVAL_MS);
    ping.unref();
    session = opened;
    return opened;
  };

  const open = (): void => {
    state = "connecting";
    let ending: Ending | undefined;
    const end = (next: Ending): void => {
      ending ??= next;
    };
    let call: http2.ClientHttp2Stream;
    try {
      call = connectSession().request({
        ":method": "POST",
        ":path": CREATE_STREAM_PATH,
        "content-type": "application/grpc",
        te: "trailers",
        [PEER_ADDRESS_HEADER]: options.peerAddrPort,
      });
    } catch (error) {
      finish(undefined, { code: undefined, message: (error as Error).message });
      return;
    }
    stream = call;
    // Per stream: a message cut off when the last one ended must not run into this one.
    const reader = new PeerPacketReader(deliver);
    // The call is over once the relay sent its status; our half of the stream goes too.
    const ended = (headers: http2.IncomingHttpHeaders): void => {
      end(statusOf(headers));
      call.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    call.on("response", (headers) => {
      // Trailers-Only: the relay answered with its status and nothing else.
      if (headers["grpc-status"] !== undefined) {
        ended(headers);
        return;
      }
      if (stream !== call || state !== "connecting") return;
      state = "connected";
      stats.connects++;
      log.info(`${words.stream} connected`, { transport: "grpc", origin: options.api.origin });
      held.release((datagrams) => {
        count(datagrams);
        write(call, datagrams, datagrams.length);
      });
    });
    call.on("trailers", ended);
    call.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (error) {
        if (!(error instanceof PeerPacketError)) throw error;
        end({ code: undefined, message: `the relay sent no PeerPacket: ${error.message}` });
        call.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      }
    });
    call.on("error", (error: Error) => end({ code: undefined, message: error.message }));
    call.on("close", () => {
      finish(call, ending ?? { code: undefined, message: closeReason(call) });
    });
  };

  const finish = (call: http2.ClientHttp2Stream | undefined, ending: Ending): void => {
    if (call !== undefined && stream !== call) return;
    stream = undefined;
    if (state === "stopped") return;
    lastError =
      ending.code === undefined
        ? ending.message
        : `${Code[ending.code] ?? `status ${ending.code}`}: ${ending.message}`;
    if (isFinal(ending)) {
      state = "stopped";
      held.discard();
      log.warn(`the relay ended the ${words.stream}; ${words.afterEnd}`, { error: lastError });
      options.onTerminal(ending.message);
      return;
    }
    state = "retrying";
    log.warn(`${words.stream} down; reopening on the next datagram`, { error: lastError });
  };

  const count = (datagrams: readonly Uint8Array[]): void => {
    stats.txDatagrams += datagrams.length;
    for (const datagram of datagrams) stats.txBytes += datagram.length;
  };

  const write = (
    call: http2.ClientHttp2Stream,
    datagrams: readonly Uint8Array[],
    count: number,
  ): void => {
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += encodedPeerPacketBytes(datagrams[i].length);
    // One buffer per batch: the stream holds it until the kernel has taken it.
    const out = Buffer.allocUnsafe(bytes);
    encodePeerPackets(datagrams, count, out);
    call.write(out);
  };

  open();

  return {
    kind: "grpc",
    get state() {
      return state;
    },
    stats,
    get lastError() {
      return lastError;
    },
    send(datagrams) {
      if (state === "stopped") {
        stats.dropsNotConnected += datagrams.length;
        return;
      }
      if (state === "retrying") open();
      if (state === "connected" && stream) {
        if (stream.writableLength > HIGH_WATER_BYTES) {
          stats.dropsCongested += datagrams.length;
          return;
        }
        count(datagrams);
        write(stream, datagrams, datagrams.length);
        return;
      }
      // Opening: the relay answers with headers at once, so this holds little.
      held.hold(datagrams);
    },
    async close() {
      state = "stopped";
      held.discard();
      clearInterval(ping);
      stream?.close(http2.constants.NGHTTP2_CANCEL);
      stream = undefined;
      session?.destroy();
      session = undefined;
    },
  };
}

/** The relay's own endings that only a new Provision can fix; every other one reopens. */
function isFinal(ending: Ending): boolean {
  return (
    (ending.code === Code.PermissionDenied && ending.message === REASON_PEER_NOT_ALLOWED) ||
    (ending.code === Code.Aborted && ending.message === REASON_PEER_REPLACED)
  );
}

function statusOf(headers: http2.IncomingHttpHeaders): Ending {
  const status = Number(headers["grpc-status"]);
  const message = headers["grpc-message"];
  let text = typeof message === "string" ? message : "";
  try {
    text = decodeURIComponent(text);
  } catch {
    // Not valid percent-encoding: show it as sent.
  }
  return { code: Number.isInteger(status) ? status : Code.Unknown, message: text };
}

function closeReason(call: http2.ClientHttp2Stream): string {
  return call.rstCode !== undefined && call.rstCode !== http2.constants.NGHTTP2_NO_ERROR
    ? `the stream was reset (HTTP/2 error ${call.rstCode})`
    : "the relay ended the stream without a status";
}
