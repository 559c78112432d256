/**
 * The node stream as Talos opens it: `sidero.link.WireGuardOverGRPCService/CreateStream`, a
 * bidirectional gRPC stream over HTTP/2 whose PEER_ADDRESS_HEADER metadata carries
 * `grpc_peer_addr_port` (shared/siderolink/relay-api.ts), one datagram per PeerPacket. PermissionDenied ("peer not allowed")
 * and Aborted ("peer replaced") end it for good; anything else is retried.
 *
 * Outgoing datagrams wait in a short drop-oldest queue for the stream to take them: a deep
 * queue inside TCP only adds latency. The stream counts as connected once the relay has
 * answered (response headers or a packet): a gRPC server may hold its headers until its first
 * message, so datagrams queue while connecting rather than wait for that.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  type PeerPacket,
  WireGuardOverGRPCService,
} from "../../shared/gen/sidero/link/wireguard_pb.ts";
import type { ApiUrl } from "../../shared/siderolink/api-url.ts";
import { PEER_ADDRESS_HEADER } from "../../shared/siderolink/relay-api.ts";
import { http2ProxyConnection, type ProxySettings } from "../net/proxy.ts";
import { type TlsSettings, tlsOptions } from "../tls.ts";
import {
  createReconnector,
  createTransportStats,
  type NodeTransport,
  type TransportHandlers,
  type TransportState,
} from "./transport.ts";

/** Outgoing datagrams held while the stream is busy; Talos keeps 100 per peer. */
export const SendQueueLimit = 100;
/** HTTP/2 PING cadence: a dead connection is noticed within two intervals. */
const PingIntervalMs = 15_000;

export interface GrpcTransportOptions extends TransportHandlers {
  readonly api: ApiUrl;
  readonly peerAddrPort: string;
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
}

export function createGrpcNodeTransport(options: GrpcTransportOptions): NodeTransport {
  const { log } = options;
  const stats = createTransportStats();
  const secure = options.api.tls ? { ...tlsOptions(options.tls), ALPNProtocols: ["h2"] } : {};
  const createConnection = http2ProxyConnection(options.proxy, options.api.origin, secure);
  const transport = createGrpcTransport({
    baseUrl: options.api.origin,
    pingIntervalMs: PingIntervalMs,
    pingTimeoutMs: PingIntervalMs,
    nodeOptions: { ...secure, ...(createConnection ? { createConnection } : {}) },
  });
  const client = createClient(WireGuardOverGRPCService, transport);
  const queue: Uint8Array[] = [];
  const one: Uint8Array[] = [];
  let wake: (() => void) | undefined;
  let state: TransportState = "connecting";
  let lastError: string | undefined;
  let abort: AbortController | undefined;

  const signal = (): void => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };

  async function* outgoing(controller: AbortController): AsyncGenerator<{ Data: Uint8Array }> {
    while (!controller.signal.aborted) {
      const datagram = queue.shift();
      if (datagram !== undefined) {
        yield { Data: datagram };
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  }

  const reconnector = createReconnector({
    what: "tunnel stream",
    log,
    intervalMs: options.retryIntervalMs,
    reconnect: () => {
      if (state === "retrying") void run();
    },
  });

  const run = async (): Promise<void> => {
    state = "connecting";
    const controller = new AbortController();
    abort = controller;
    let opened = false;
    const markOpen = (): void => {
      if (opened) return;
      opened = true;
      state = "connected";
      stats.connects++;
      log.info("tunnel stream connected", { transport: "grpc", origin: options.api.origin });
    };
    try {
      const responses: AsyncIterable<PeerPacket> = client.createStream(outgoing(controller), {
        headers: { [PEER_ADDRESS_HEADER]: options.peerAddrPort },
        signal: controller.signal,
        onHeader: markOpen,
      });
      for await (const packet of responses) {
        markOpen();
        if (packet.Data.length === 0) continue;
        stats.rxDatagrams++;
        stats.rxBytes += packet.Data.length;
        one[0] = packet.Data;
        options.onDatagrams(one);
      }
      lastError = "the relay ended the stream";
    } catch (error) {
      if ((state as TransportState) === "stopped") return;
      const connectError = ConnectError.from(error);
      lastError = `${Code[connectError.code]}: ${connectError.rawMessage}`;
      // Only a status the relay sent ends the stream for good: connect-node reports a reset
      // connection (the relay restarting) as Aborted too, with the socket error as its cause.
      const sentByRelay = connectError.cause === undefined;
      if (
        sentByRelay &&
        (connectError.code === Code.PermissionDenied || connectError.code === Code.Aborted)
      ) {
        state = "stopped";
        controller.abort();
        signal();
        log.warn("the relay ended the tunnel stream; provisioning again", { error: lastError });
        options.onTerminal(connectError.rawMessage);
        return;
      }
    } finally {
      controller.abort();
      signal();
    }
    if ((state as TransportState) === "stopped") return;
    state = "retrying";
    reconnector.schedule(lastError);
  };

  void run();

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
      // While connecting, datagrams queue: the relay may send response headers only with its
      // first packet, which answers the handshake this queue holds.
      if (state === "retrying" || state === "stopped") {
        stats.dropsNotConnected += datagrams.length;
        return;
      }
      for (const datagram of datagrams) {
        if (queue.length >= SendQueueLimit) {
          queue.shift();
          stats.dropsCongested++;
        }
        // The device may reuse its buffer once send returns; the stream writes later.
        queue.push(datagram.slice());
        stats.txDatagrams++;
        stats.txBytes += datagram.length;
      }
      signal();
    },
    async close() {
      state = "stopped";
      reconnector.cancel();
      abort?.abort();
      signal();
    },
  };
}
