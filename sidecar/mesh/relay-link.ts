/**
 * A mesh member's one WebSocket to the relay (shared/mesh/frame.ts): it publishes the member's
 * sealed record on every connect and every REPUBLISH_INTERVAL_MS, hands pushed records and
 * removals to the member, and carries relayed datagrams both ways, batched per event-loop turn.
 */
import { formatId } from "../../shared/mesh/cluster.ts";
import {
  DatagramBatcher,
  decodeMeshFrame,
  encodePublish,
  forEachDatagram,
  MeshFrameError,
} from "../../shared/mesh/codec.ts";
import { MEMBER_QUERY, MeshFrameType, REPUBLISH_INTERVAL_MS } from "../../shared/mesh/frame.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import type { Logger } from "../log.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { TlsSettings } from "../tls.ts";
import { superviseWebSocket } from "../transport/supervised-websocket.ts";
import { createTransportStats, type TransportStats } from "../transport/transport.ts";

export interface RelayLinkHandlers {
  /** A record pushed by the relay: the slot's member id, the observed address, the sealed blob. */
  onRecord(member: Uint8Array, observed: Uint8Array, record: Uint8Array): void;
  onRemoved(member: Uint8Array): void;
  /** Every record that existed at connect has arrived. */
  onSynced(): void;
  /** A relayed datagram (a view valid only during the call) and the member it came from. */
  onDatagram(member: Uint8Array, datagram: Uint8Array): void;
}

export interface RelayLinkOptions extends RelayLinkHandlers {
  /** The relay's origin, `http(s)://host:port`. */
  readonly relay: string;
  readonly clusterId: string;
  readonly memberId: Uint8Array;
  /** The member's current sealed record (sealed anew each time: fresh expiry and nonce). */
  readonly record: () => Uint8Array;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
  readonly log: Logger;
  readonly retryIntervalMs?: number;
}

export interface RelayLink {
  readonly stats: TransportStats;
  readonly state: string;
  readonly lastError: string | undefined;
  /** Queues a datagram for `member`; sent at the end of this event-loop turn. */
  send(member: Uint8Array, datagram: Uint8Array): void;
  /** Publishes the record again now (endpoints changed). */
  publish(): void;
  /** Datagrams dropped because the link was down or the datagram could not be framed. */
  readonly drops: number;
  close(): Promise<void>;
}

/** `ws(s)://host/v1/mesh/<cluster>/connect?member=<id>`. */
export function meshConnectUrl(relay: string, clusterId: string, memberId: Uint8Array): string {
  const origin = relay.replace(/\/+$/, "").replace(/^http/, "ws");
  return `${origin}/v1/mesh/${clusterId}/connect?${MEMBER_QUERY}=${formatId(memberId)}`;
}

export function connectRelayLink(options: RelayLinkOptions): RelayLink {
  const stats = createTransportStats();
  let drops = 0;
  let flushQueued = false;
  let republish: ReturnType<typeof setInterval> | undefined;
  const publish = (): void => {
    const ws = stream.openSocket();
    if (ws) ws.send(encodePublish(options.record()));
  };
  const batcher = new DatagramBatcher((frame) => {
    const ws = stream.openSocket();
    if (ws === undefined) return;
    // ws may write after send returns and the batch buffer is reused: copy.
    ws.send(Buffer.from(frame));
  });
  const flush = (): void => {
    flushQueued = false;
    batcher.flush();
  };

  const stream = superviseWebSocket({
    url: meshConnectUrl(options.relay, options.clusterId, options.memberId),
    headers: {},
    tls: options.tls,
    proxy: options.proxy,
    log: options.log,
    stats,
    what: "mesh relay link",
    connectedFields: { relay: options.relay },
    retryIntervalMs: options.retryIntervalMs,
    onOpen() {
      publish();
      clearInterval(republish);
      republish = setInterval(publish, REPUBLISH_INTERVAL_MS);
    },
    onBinary(ws, data) {
      try {
        const frame = decodeMeshFrame(data);
        switch (frame.type) {
          case MeshFrameType.Record:
            options.onRecord(frame.member, frame.observed, frame.record);
            return;
          case MeshFrameType.Removed:
            options.onRemoved(frame.member);
            return;
          case MeshFrameType.Synced:
            options.onSynced();
            return;
          case MeshFrameType.Datagrams:
            forEachDatagram(frame.frame, (member, datagram) => {
              stats.rxDatagrams++;
              stats.rxBytes += datagram.length;
              options.onDatagram(member, datagram);
            });
            return;
          case MeshFrameType.Publish:
            throw new MeshFrameError("PUBLISH is the member's to send");
        }
      } catch (error) {
        if (!(error instanceof MeshFrameError)) throw error;
        options.log.warn("malformed frame from the relay; reconnecting", { error: error.message });
        ws.close(error.tooBig ? CloseCode.TooBig : CloseCode.Malformed, error.message);
      }
    },
    onClosed() {
      clearInterval(republish);
    },
    endsForGood: () => false,
    onEnded() {},
  });

  return {
    stats,
    get state() {
      return stream.state;
    },
    get lastError() {
      return stream.lastError;
    },
    get drops() {
      return drops + batcher.dropped;
    },
    send(member, datagram) {
      if (stream.openSocket() === undefined) {
        drops++;
        return;
      }
      stats.txDatagrams++;
      stats.txBytes += datagram.length;
      batcher.add(member, datagram);
      if (!flushQueued) {
        flushQueued = true;
        setImmediate(flush);
      }
    },
    publish,
    async close() {
      clearInterval(republish);
      await stream.close("mesh member shutting down");
    },
  };
}
