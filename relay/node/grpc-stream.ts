/**
 * `sidero.link.WireGuardOverGRPCService/CreateStream` on Node's HTTP/2: the stream Talos opens
 * when `grpc_peer_addr_port` is set. One PeerPacket carries one datagram each way. The
 * `x-siderolink-ipv6-addr` metadata names the peer; since the path names no network, the
 * virtual address (random in a prefix all networks share) finds it.
 */
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type {
  PeerPacket,
  WireGuardOverGRPCService,
} from "../../shared/gen/sidero/link/wireguard_pb.ts";
import { canonicalPeerAddress, PEER_ADDRESS_HEADER } from "../../shared/siderolink/relay-api.ts";
import { DatagramStream } from "../../shared/tunnel/datagram-stream.ts";
import { CloseCode, REASON_PEER_NOT_ALLOWED } from "../../shared/tunnel/frame.ts";
import { logStream } from "../app/log.ts";
import type { NetworkRuntime } from "../app/runtime.ts";
import type { HubSocket } from "../hub/socket.ts";

/** Finds the network runtime whose peer owns a virtual address. */
export type PeerLocator = (virtualAddress: string) => Promise<NetworkRuntime | undefined>;
/** Whether a stream for this peer may open now (the relay's tunnel cap). */
export type TunnelAdmission = (runtime: NetworkRuntime, virtualAddress: string) => boolean;

export interface GrpcStreamOptions {
  /** A stream whose first PeerPacket has not arrived this long after it opened is closed. */
  readonly firstMessageDeadlineMs?: number;
  readonly now?: () => number;
}

export function createWireGuardOverGrpc(
  locate: PeerLocator,
  admit: TunnelAdmission = () => true,
  options: GrpcStreamOptions = {},
): ServiceImpl<typeof WireGuardOverGRPCService> {
  const now = options.now ?? Date.now;
  const firstMessageDeadlineMs = options.firstMessageDeadlineMs;
  return {
    async *createStream(requests: AsyncIterable<PeerPacket>, context: HandlerContext) {
      const virtualAddress = canonicalPeerAddress(
        context.requestHeader.get(PEER_ADDRESS_HEADER) ?? "",
      );
      const runtime = virtualAddress && (await locate(virtualAddress));
      if (!virtualAddress || !runtime)
        throw new ConnectError(REASON_PEER_NOT_ALLOWED, Code.PermissionDenied);
      if (!admit(runtime, virtualAddress))
        throw new ConnectError(
          "relay holds its limit of tunnels; try again later",
          Code.ResourceExhausted,
        );

      const socket = new GrpcHubSocket(context.signal);
      const { hub } = runtime;
      // A stream that never speaks would hold its slot (and replace the node's real stream).
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
      const gone = logStream(runtime.log, socket, {
        network: runtime.name,
        role: "node",
        virtualAddress,
      });
      hub.attach(socket, { v: 1, role: "node", virtualAddress, connectedAt: now() });
      const one: Uint8Array[] = [];
      // Reads until the client half-closes or the call ends; the response side may end first
      // (replaced, revoked), and connect then cancels the call, which ends this loop too.
      void (async () => {
        try {
          for await (const packet of requests) {
            clearTimeout(silent);
            one[0] = packet.Data;
            if (packet.Data.length > 0) hub.nodeDatagrams(socket, one, 1);
          }
        } catch {
          // The client went away; the stream ends below.
        } finally {
          clearTimeout(silent);
          socket.end();
        }
      })();
      try {
        yield* socket.outgoing();
      } finally {
        gone(CloseCode.Normal, "gRPC stream ended");
        hub.closed(socket);
        socket.end();
      }
    },
  };
}

/** HubSocket that queues each datagram for a node as one PeerPacket on a gRPC response stream. */
class GrpcHubSocket implements HubSocket {
  readonly #stream = new DatagramStream();

  constructor(signal: AbortSignal) {
    signal.addEventListener("abort", () => this.end(), { once: true });
  }

  get writable(): boolean {
    return !this.#stream.ended;
  }

  get bufferedAmount(): number {
    return this.#stream.bufferedAmount;
  }

  sendDatagrams(
    datagrams: readonly Uint8Array[],
    _tags: readonly Uint8Array[] | undefined,
    count: number,
  ): void {
    for (let i = 0; i < count; i++) this.#stream.push(datagrams[i]);
  }

  /** A node stream gets no control frames, and gRPC has no text pings to answer. */
  sendControl(): void {}

  close(code: number, reason: string): void {
    this.#stream.end(new ConnectError(reason, closeStatus(code)));
  }

  persist(): void {}

  end(): void {
    this.#stream.end();
  }

  outgoing(): AsyncGenerator<{ Data: Uint8Array }> {
    return this.#stream.packets();
  }
}

/** The gRPC status that tells a Talos client what a hub close code means. */
function closeStatus(code: number): Code {
  switch (code) {
    case CloseCode.Replaced:
      return Code.Aborted;
    case CloseCode.PeerNotAllowed:
    case CloseCode.PeerRemoved:
      return Code.PermissionDenied;
    case CloseCode.Malformed:
    case CloseCode.TooBig:
      return Code.InvalidArgument;
    case CloseCode.LivenessTimeout:
      return Code.DeadlineExceeded;
    default:
      return Code.Unavailable;
  }
}
