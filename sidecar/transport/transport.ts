/**
 * What a node's tunnel transport looks like to the rest of the sidecar: a stream to the relay
 * that carries WireGuard datagrams both ways and keeps itself connected. It reconnects on its
 * own after failures (gRPC, as Talos: at once on the next outgoing datagram; WebSocket: every
 * RETRY_INTERVAL_MS, jittered); when the relay ends the stream for a reason a reconnect cannot fix
 * ("peer not allowed", "peer replaced"), it stops and reports `onTerminal`, and the caller
 * provisions again.
 */
import type { LogFields, Logger } from "../log.ts";
import type { ProxySettings } from "../net/proxy.ts";
import type { TlsSettings } from "../tls.ts";

/**
 * The WebSocket transport's retry after a failure. (Talos's gRPC stream has no such delay: it
 * reopens on the next outgoing datagram, and so does the gRPC transport.)
 */
export const RETRY_INTERVAL_MS = 10_000;
/** Talos waits 5 s after a terminal error before provisioning again. */
export const TERMINAL_RETRY_MS = 5_000;
/**
 * Bytes queued in the socket above which outgoing datagrams are dropped rather than buffered:
 * inside TCP, a deep queue turns loss into seconds of latency for the tunnelled TCP flows.
 */
export const HIGH_WATER_BYTES = 256 * 1024;
/**
 * Outgoing datagrams held, oldest dropped first, while a stream opens or waits to reconnect, and
 * sent once it is open: a restarted node's first handshake initiation then goes out with the
 * stream instead of after WireGuard's 5 s retry. Talos holds as many (maxPendingClientMessages
 * in internal/app/machined/pkg/controllers/siderolink/manager.go, siderolabs/talos), in the
 * ring queue of siderolink's pkg/wgtunnel/wgbind/client.go.
 */
export const SEND_QUEUE_LIMIT = 100;

export type TransportKind = "websocket" | "grpc" | "http";
/** What `--transport` takes: a kind, or auto (the best that works, falling back to http). */
export type TransportChoice = "auto" | TransportKind;
export const TRANSPORT_CHOICES: readonly TransportChoice[] = ["auto", "websocket", "grpc", "http"];
export type TransportState = "connecting" | "connected" | "retrying" | "stopped";

export interface TransportStats {
  rxDatagrams: number;
  rxBytes: number;
  txDatagrams: number;
  txBytes: number;
  /** Streams opened successfully, the first included. */
  connects: number;
  /** Outgoing datagrams dropped: no stream open to take them, nor one to hold them for. */
  dropsNotConnected: number;
  /**
   * Outgoing datagrams dropped: the stream's send buffer was above the high-water mark, or the
   * queue held while it opens was full.
   */
  dropsCongested: number;
}

export interface NodeTransport {
  readonly kind: TransportKind;
  readonly state: TransportState;
  readonly stats: Readonly<TransportStats>;
  /** Why the last stream ended or failed, if it did. */
  readonly lastError: string | undefined;
  /**
   * Sends a batch of datagrams; while the stream opens or waits to reconnect, holds the newest
   * SEND_QUEUE_LIMIT of them for it; drops and counts when it has ended or is congested.
   */
  send(datagrams: readonly Uint8Array[]): void;
  /** Ends the stream for good. */
  close(): Promise<void>;
}

/**
 * An open stream's sending side, as the WebSocket and the HTTP-only tunnel both offer it: one
 * binary frame per call (copied or written before the call returns), and the bytes accepted but
 * not yet written out.
 */
export interface FrameSink {
  send(frame: Uint8Array): void;
  readonly bufferedAmount: number;
}

/** A supervised frame stream (supervised-websocket.ts, supervised-http-tunnel.ts). */
export interface FrameStream {
  readonly state: TransportState;
  readonly lastError: string | undefined;
  /** The sending side while a connection is open. */
  openSocket(): FrameSink | undefined;
  close(reason: string): Promise<void>;
}

/**
 * How a transport's log lines name its stream and what follows the relay ending it for good:
 * `<stream> connected`, `<stream> down; retrying`, `the relay ended the <stream>; <afterEnd>`.
 * The node role provisions again itself; the site gateway carries other machines' streams and
 * can only forget the machine until it provisions again.
 */
export interface TunnelWords {
  readonly stream: string;
  readonly afterEnd: string;
}

export const NODE_TUNNEL_WORDS: TunnelWords = {
  stream: "tunnel stream",
  afterEnd: "provisioning again",
};

export interface TransportHandlers {
  /** Datagrams from the relay; views valid only during the call. */
  onDatagrams(datagrams: readonly Uint8Array[]): void;
  /** The relay ended the stream in a way only a new Provision can fix. */
  onTerminal(reason: string): void;
  readonly log: Logger;
  /** The log's words for this stream (default NODE_TUNNEL_WORDS). */
  readonly words?: TunnelWords;
  /** Overrides RETRY_INTERVAL_MS (tests). */
  readonly retryIntervalMs?: number;
}

export function createTransportStats(): TransportStats {
  return {
    rxDatagrams: 0,
    rxBytes: 0,
    txDatagrams: 0,
    txBytes: 0,
    connects: 0,
    dropsNotConnected: 0,
    dropsCongested: 0,
  };
}

/** A retry delay around `base`: +-20 % so that many nodes cut off together do not return together. */
export function jittered(base: number, random: () => number = Math.random): number {
  return Math.round(base * (0.8 + 0.4 * random()));
}

/**
 * The retry of a dropped stream: one pending reconnect at a time, after a jittered
 * RETRY_INTERVAL_MS, with a warning that says why (`<what> down; retrying`).
 */
export interface Reconnector {
  schedule(error: string | undefined): void;
  cancel(): void;
}

export function createReconnector(options: {
  readonly what: string;
  readonly log: Logger;
  readonly intervalMs: number | undefined;
  readonly reconnect: () => void;
}): Reconnector {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return {
    schedule(error) {
      const delay = jittered(options.intervalMs ?? RETRY_INTERVAL_MS);
      options.log.warn(`${options.what} down; retrying`, { error, retryInMs: delay });
      timer = setTimeout(() => {
        timer = undefined;
        options.reconnect();
      }, delay);
    },
    cancel() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/**
 * What a supervised stream (the WebSocket, or the HTTP-only tunnel) is told and calls back, over
 * connections of type C that deliver binary messages of type D.
 */
export interface SupervisedStreamOptions<C, D> {
  /** Credential headers, sent with every request that opens or feeds the stream. */
  readonly headers: Readonly<Record<string, string>>;
  readonly tls: TlsSettings;
  /** Forward proxies: a proxied stream goes through CONNECT. */
  readonly proxy: ProxySettings;
  readonly log: Logger;
  readonly stats: TransportStats;
  /** What the log calls the stream: `<what> connected`, `<what> down; retrying`. */
  readonly what: string;
  /** Fields of the `<what> connected` line. */
  readonly connectedFields: LogFields;
  readonly retryIntervalMs: number | undefined;
  /** Called before each connection attempt. */
  onConnecting?(): void;
  /** Called once a connection is open. */
  onOpen?(connection: C): void;
  /** A binary message; a FrameError thrown here ends the connection with its code. */
  onBinary(connection: C, data: D): void;
  /** Called whenever a connection closes, even at shutdown. */
  onClosed?(): void;
  /** Whether the relay's close code ends the stream for good (no reconnect). */
  endsForGood(code: number): boolean;
  /** The stream ended for good (state is already "stopped"); `reason` may be empty. */
  onEnded(code: number, reason: string): void;
}
