/**
 * `sidero.link.WireGuardOverGRPCService/CreateStream` on the LAN: the stream a Talos machine
 * opens when its Provision answer carried `grpc_peer_addr_port`, one datagram per PeerPacket,
 * `x-siderolink-ipv6-addr` naming the machine. The gateway does not judge the address (a
 * restarted gateway must take back the streams of machines it provisioned before): the relay
 * does, on the tunnel the gateway opens for it, and a refusal there ends this stream.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { WireGuardOverGRPCService } from "../../shared/gen/sidero/link/wireguard_pb.ts";
import { canonicalPeerAddress, PEER_ADDRESS_HEADER } from "../../shared/siderolink/relay-api.ts";
import { REASON_PEER_NOT_ALLOWED } from "../../shared/tunnel/frame.ts";
import type { GatewayNode } from "./gateway-node.ts";
import { lanConnectionKey } from "./lan-server.ts";

/** The machine for a stream's `x-siderolink-ipv6-addr` value (already checked to parse). */
export type NodeForStream = (peerAddrPort: string) => GatewayNode;

export function createMachineStreams(
  nodeFor: NodeForStream,
  refused: () => void,
): ServiceImpl<typeof WireGuardOverGRPCService> {
  return {
    async *createStream(requests, context) {
      const peerAddrPort = context.requestHeader.get(PEER_ADDRESS_HEADER) ?? "";
      if (canonicalPeerAddress(peerAddrPort) === undefined) {
        refused();
        throw new ConnectError(REASON_PEER_NOT_ALLOWED, Code.PermissionDenied);
      }
      const node = nodeFor(peerAddrPort);
      const stream = node.attachStream(context.values.get(lanConnectionKey)?.remote);
      context.signal.addEventListener("abort", () => node.detachStream(stream), { once: true });
      const one: Uint8Array[] = [];
      // Reads until the machine half-closes or the call ends; the response side may end first
      // (replaced, refused by the relay), and connect then cancels the call, ending this too.
      void (async () => {
        try {
          for await (const packet of requests) {
            if (packet.Data.length === 0) continue;
            one[0] = packet.Data;
            node.fromMachine(one);
          }
        } catch {
          // The machine went away; the stream ends below.
        } finally {
          node.detachStream(stream);
        }
      })();
      try {
        yield* stream.packets();
      } finally {
        node.detachStream(stream);
      }
    },
  };
}
