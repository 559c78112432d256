/**
 * The server's uplink to the relay: `GET /v1/networks/<network>/uplink` upgraded to a WebSocket
 * with `Authorization: Bearer <uplink secret>`. It says HELLO with the server's public key,
 * applies the peer messages through a PeerReconciler and acknowledges each once applied, and
 * carries PEER_DATAGRAMS both ways: each datagram tagged with the virtual address of its node.
 *
 * The same frames ride the HTTP-only tunnel instead (`transport: "http"`: gRPC-web Receive and Send
 * under the same path, shared/tunnel/http-tunnel.ts) where the management host's network lets no
 * WebSocket through; both are FrameStreams, so nothing else here depends on which.
 *
 * It reconnects by itself (every RETRY_INTERVAL_MS, jittered) and reconciles on every connection.
 * A refused secret, protocol version or server key (the relay pins the key of the network's first
 * HELLO) is fatal: `onFatal` reports it.
 */
import { uplinkPath } from "../../shared/siderolink/relay-api.ts";
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import { decodeControl, decodePeerDatagrams, frameType } from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import { CloseCode, FrameType, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";
import type { Logger } from "../log.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { TlsSettings } from "../tls.ts";
import { superviseHttpTunnel } from "../transport/supervised-http-tunnel.ts";
import { superviseWebSocket } from "../transport/supervised-websocket.ts";
import {
  createTransportStats,
  type FrameSink,
  type FrameStream,
  HIGH_WATER_BYTES,
  type TransportState,
  type TransportStats,
} from "../transport/transport.ts";
import type { PeerReconciler } from "./peers.ts";

export interface UplinkOptions {
  /** The relay's base URL, `http(s)://host:port`. */
  readonly relayUrl: string;
  readonly network: string;
  /** The network's uplink secret (for a network created before it had one: its admin secret). */
  readonly secret: string;
  readonly serverPublicKey: Uint8Array;
  readonly reconciler: PeerReconciler;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
  /** The stream's carrier. */
  readonly transport: UplinkKind;
  readonly log: Logger;
  /** Datagrams from nodes: `tags[i]` (16 bytes) names the node of `datagrams[i]`. Views. */
  onDatagrams(tags: readonly Uint8Array[], datagrams: readonly Uint8Array[]): void;
  /** The relay refused this uplink for a reason retrying cannot fix. */
  onFatal(reason: string, code: number): void;
  readonly retryIntervalMs?: number;
}

/** What carries the uplink's frames: a WebSocket, or the HTTP-only tunnel. */
export type UplinkKind = "websocket" | "http";

export interface Uplink {
  readonly kind: UplinkKind;
  readonly state: TransportState;
  readonly stats: Readonly<TransportStats>;
  readonly lastError: string | undefined;
  /** Whether the relay's peer list has been applied on the current connection. */
  readonly synced: boolean;
  /** Sends datagrams to nodes: `tags[i]` is the node of `datagrams[i]`. */
  send(datagrams: readonly Uint8Array[], tag: Uint8Array): void;
  close(): Promise<void>;
}

const FatalCodes: ReadonlySet<number> = new Set([
  CloseCode.Unauthorized,
  CloseCode.UnsupportedVersion,
  CloseCode.ServerKeyMismatch,
]);

/** The uplink's URL: `ws(s)://` for the WebSocket, `http(s)://` for the HTTP-only tunnel. */
export function uplinkUrl(relayUrl: string, network: string, transport = "websocket"): string {
  const base = relayUrl.replace(/\/+$/, "");
  return `${transport === "websocket" ? base.replace(/^http/, "ws") : base}${uplinkPath(network)}`;
}

export function connectUplink(options: UplinkOptions): Uplink {
  const { log, reconciler } = options;
  const url = uplinkUrl(options.relayUrl, options.network, options.transport);
  const stats = createTransportStats();
  const tags: Uint8Array[] = [];
  const datagrams: Uint8Array[] = [];
  let synced = false;
  /** Peer messages are applied strictly in order, one after another. */
  let applying: Promise<void> = Promise.resolve();

  const control = (sink: FrameSink, frame: Uint8Array): void => {
    const message = decodeControl(frame);
    applying = applying.then(async () => {
      try {
        const seq = await reconciler.handle(message);
        if (message.type === FrameType.PeerList && message.last) {
          if (!synced)
            log.info("peers reconciled with the relay", { peers: reconciler.peers.size });
          synced = true;
        }
        if (seq !== undefined && stream.openSocket() === sink) sink.send(encodeAck(seq));
      } catch (error) {
        // Not acknowledged: the relay's Provision times out and the node retries.
        log.error("applying a peer change failed", { error: (error as Error).message });
      }
    });
  };

  const supervise =
    options.transport === "websocket"
      ? superviseWebSocket
      : (hooks: Omit<Parameters<typeof superviseWebSocket>[0], "url">) =>
          superviseHttpTunnel({ ...hooks, baseUrl: url });
  const stream: FrameStream = supervise({
    url,
    headers: { authorization: `Bearer ${options.secret}` },
    tls: options.tls,
    proxy: options.proxy,
    log,
    stats,
    what: "uplink",
    connectedFields: { url, network: options.network, transport: options.transport },
    retryIntervalMs: options.retryIntervalMs,
    onConnecting() {
      synced = false;
      reconciler.connectionReset();
    },
    onOpen(sink) {
      sink.send(encodeHello(PROTOCOL_VERSION, options.serverPublicKey));
    },
    onBinary(sink, data) {
      if (frameType(data) === FrameType.PeerDatagrams) {
        const count = decodePeerDatagrams(data, tags, datagrams);
        tags.length = count;
        datagrams.length = count;
        stats.rxDatagrams += count;
        for (let i = 0; i < count; i++) stats.rxBytes += datagrams[i].length;
        options.onDatagrams(tags, datagrams);
      } else {
        control(sink, data);
      }
    },
    onClosed() {
      synced = false;
    },
    endsForGood: (code) => FatalCodes.has(code),
    onEnded(code, reason) {
      options.onFatal(reason || `close code ${code}`, code);
    },
  });

  const sender = createBatchSender(createBatchEncoder(true), (frame) =>
    stream.openSocket()?.send(frame),
  );

  return {
    kind: options.transport,
    get state() {
      return stream.state;
    },
    stats,
    get lastError() {
      return stream.lastError;
    },
    get synced() {
      return synced;
    },
    send(batch, tag) {
      const ws = synced ? stream.openSocket() : undefined;
      if (ws === undefined) {
        stats.dropsNotConnected += batch.length;
        return;
      }
      if (ws.bufferedAmount > HIGH_WATER_BYTES) {
        stats.dropsCongested += batch.length;
        return;
      }
      for (const datagram of batch) {
        sender.add(datagram, tag);
        stats.txDatagrams++;
        stats.txBytes += datagram.length;
      }
      sender.flush();
    },
    close: () => stream.close("server shutting down"),
  };
}
