/**
 * A node's tunnel over a frame stream (a WebSocket, or the HTTP-only tunnel): NODE_DATAGRAMS
 * frames both ways, outgoing datagrams batched into one frame per call, held while the stream
 * opens or waits to reconnect (held-datagrams.ts) and dropped (counted) while its send buffer is
 * above HIGH_WATER_BYTES. The relay's "peer not allowed", "peer replaced" and peer-removed close
 * codes end it for good.
 */
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import { decodeNodeDatagrams } from "../../shared/tunnel/decode.ts";
import { createBatchEncoder } from "../../shared/tunnel/encode.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import type { LogFields } from "../log.ts";
import { HeldDatagrams } from "./held-datagrams.ts";
import {
  createTransportStats,
  type FrameSink,
  type FrameStream,
  HIGH_WATER_BYTES,
  NODE_TUNNEL_WORDS,
  type NodeTransport,
  type TransportHandlers,
  type TransportKind,
  type TransportStats,
} from "./transport.ts";

/** Close codes after which reconnecting is pointless: the relay no longer knows this node. */
const TerminalCodes: ReadonlySet<number> = new Set([
  CloseCode.PeerNotAllowed,
  CloseCode.Replaced,
  CloseCode.PeerRemoved,
]);

/** What a node transport asks of the supervised stream it opens. */
export interface NodeStreamHooks {
  readonly stats: TransportStats;
  readonly what: string;
  readonly connectedFields: LogFields;
  readonly retryIntervalMs: number | undefined;
  onOpen(sink: FrameSink): void;
  onBinary(sink: FrameSink, data: Uint8Array): void;
  endsForGood(code: number): boolean;
  onEnded(code: number, reason: string): void;
}

export function createNodeStreamTransport(
  kind: TransportKind,
  url: string,
  handlers: TransportHandlers,
  open: (hooks: NodeStreamHooks) => FrameStream,
): NodeTransport {
  const { log } = handlers;
  const words = handlers.words ?? NODE_TUNNEL_WORDS;
  const stats = createTransportStats();
  const views: Uint8Array[] = [];
  const held = new HeldDatagrams(stats);
  // Both streams copy (or write out) the frame inside send, so the encoder's buffer is free again.
  const sender = createBatchSender(createBatchEncoder(false), (frame) =>
    stream.openSocket()?.send(frame),
  );
  const forward = (datagrams: readonly Uint8Array[]): void => {
    for (const datagram of datagrams) {
      sender.add(datagram);
      stats.txDatagrams++;
      stats.txBytes += datagram.length;
    }
    sender.flush();
  };
  const stream = open({
    stats,
    what: words.stream,
    connectedFields: { transport: kind, url },
    retryIntervalMs: handlers.retryIntervalMs,
    onOpen: () => held.release(forward),
    onBinary(_sink, data) {
      const count = decodeNodeDatagrams(data, views);
      views.length = count;
      stats.rxDatagrams += count;
      for (let i = 0; i < count; i++) stats.rxBytes += views[i].length;
      handlers.onDatagrams(views);
    },
    endsForGood: (code) => TerminalCodes.has(code),
    onEnded(code, reason) {
      held.discard();
      log.warn(`the relay ended the ${words.stream}; ${words.afterEnd}`, { code, reason });
      handlers.onTerminal(reason || `close code ${code}`);
    },
  });

  return {
    kind,
    get state() {
      return stream.state;
    },
    stats,
    get lastError() {
      return stream.lastError;
    },
    send(datagrams) {
      const state = stream.state;
      if (state === "stopped") {
        stats.dropsNotConnected += datagrams.length;
        return;
      }
      const sink = state === "connected" ? stream.openSocket() : undefined;
      if (sink === undefined) {
        held.hold(datagrams);
        return;
      }
      if (sink.bufferedAmount > HIGH_WATER_BYTES) {
        stats.dropsCongested += datagrams.length;
        return;
      }
      forward(datagrams);
    },
    close: () => {
      held.discard();
      return stream.close("node shutting down");
    },
  };
}
