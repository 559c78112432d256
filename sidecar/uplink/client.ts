/**
 * The server's uplink to the relay: `GET /v1/networks/<network>/uplink` upgraded to a WebSocket
 * with `Authorization: Bearer <uplink secret>`. It says HELLO with the server's public key,
 * applies the peer messages through a PeerReconciler and acknowledges each once applied, and
 * carries PEER_DATAGRAMS both ways: each datagram tagged with the virtual address of its node.
 *
 * It reconnects by itself (every RetryIntervalMs, jittered) and reconciles on every connection.
 * A refused secret, protocol version or server key (the relay pins the key of the network's first
 * HELLO) is fatal: `onFatal` reports it.
 */
import { WebSocket } from "ws";
import { uplinkPath } from "../../shared/siderolink/relay-api.ts";
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import { decodeControl, decodePeerDatagrams, frameType } from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import { CloseCode, FrameType, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";
import type { Logger } from "../log.ts";
import type { TlsSettings } from "../tls.ts";
import { superviseWebSocket } from "../transport/supervised-websocket.ts";
import {
  createTransportStats,
  HighWaterBytes,
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
  readonly log: Logger;
  /** Datagrams from nodes: `tags[i]` (16 bytes) names the node of `datagrams[i]`. Views. */
  onDatagrams(tags: readonly Uint8Array[], datagrams: readonly Uint8Array[]): void;
  /** The relay refused this uplink for a reason retrying cannot fix. */
  onFatal(reason: string, code: number): void;
  readonly retryIntervalMs?: number;
}

export interface Uplink {
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

export function uplinkUrl(relayUrl: string, network: string): string {
  const base = relayUrl.replace(/\/+$/, "").replace(/^http/, "ws");
  return `${base}${uplinkPath(network)}`;
}

export function connectUplink(options: UplinkOptions): Uplink {
  const { log, reconciler } = options;
  const url = uplinkUrl(options.relayUrl, options.network);
  const stats = createTransportStats();
  const tags: Uint8Array[] = [];
  const datagrams: Uint8Array[] = [];
  let synced = false;
  /** Peer messages are applied strictly in order, one after another. */
  let applying: Promise<void> = Promise.resolve();

  const control = (ws: WebSocket, frame: Uint8Array): void => {
    const message = decodeControl(frame);
    applying = applying.then(async () => {
      try {
        const seq = await reconciler.handle(message);
        if (message.type === FrameType.PeerList && message.last) {
          if (!synced)
            log.info("peers reconciled with the relay", { peers: reconciler.peers.size });
          synced = true;
        }
        if (seq !== undefined && ws.readyState === WebSocket.OPEN) ws.send(encodeAck(seq));
      } catch (error) {
        // Not acknowledged: the relay's Provision times out and the node retries.
        log.error("applying a peer change failed", { error: (error as Error).message });
      }
    });
  };

  const stream = superviseWebSocket({
    url,
    headers: { authorization: `Bearer ${options.secret}` },
    tls: options.tls,
    log,
    stats,
    what: "uplink",
    connectedFields: { url, network: options.network },
    retryIntervalMs: options.retryIntervalMs,
    onConnecting() {
      synced = false;
      reconciler.connectionReset();
    },
    onOpen(ws) {
      ws.send(encodeHello(PROTOCOL_VERSION, options.serverPublicKey));
    },
    onBinary(ws, data) {
      if (frameType(data) === FrameType.PeerDatagrams) {
        const count = decodePeerDatagrams(data, tags, datagrams);
        tags.length = count;
        datagrams.length = count;
        stats.rxDatagrams += count;
        for (let i = 0; i < count; i++) stats.rxBytes += datagrams[i].length;
        options.onDatagrams(tags, datagrams);
      } else {
        control(ws, data);
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
      if (ws.bufferedAmount > HighWaterBytes) {
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
