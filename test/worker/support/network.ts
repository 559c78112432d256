/** A network with its uplink up, and nodes provisioned into it, on a running relay. */
import { randomUUID } from "node:crypto";
import {
  createNetwork,
  type NetworkSummary,
  openNodeStream,
  provisionClient,
  provisionWithAck,
  randomKey,
  type TestSocket,
  TestUplink,
  uniqueNetworkName,
} from "./clients.ts";
import { ipv6Bytes } from "./frames.ts";

export interface TestNode {
  readonly nodeUuid: string;
  /** grpc_peer_addr_port from the Provision reply: what x-siderolink-ipv6-addr carries. */
  readonly peerAddrPort: string;
  /** The virtual address's 16 bytes: the node's tag on the uplink. */
  readonly tag: Uint8Array;
}

export interface TestNetwork {
  readonly network: NetworkSummary;
  readonly uplink: TestUplink;
  provisionNode(): Promise<TestNode>;
  /** Opens the node's tunnel stream and waits until it is open. */
  connect(node: TestNode): Promise<TestSocket>;
  /** Closes every socket this network opened. */
  close(): void;
}

export async function startTestNetwork(base: URL, operatorToken: string): Promise<TestNetwork> {
  const network = await createNetwork(base, operatorToken, uniqueNetworkName());
  const uplink = await new TestUplink(base, network.name, network.uplinkSecret).hello();
  const sockets: TestSocket[] = [uplink.socket];
  const client = provisionClient(base, "connect");
  return {
    network,
    uplink,
    async provisionNode() {
      const nodeUuid = randomUUID();
      const { response } = await provisionWithAck(client, uplink, {
        nodeUuid,
        nodePublicKey: randomKey(),
        joinToken: network.joinToken,
      });
      return {
        nodeUuid,
        peerAddrPort: response.grpcPeerAddrPort,
        tag: ipv6Bytes(response.grpcPeerAddrPort),
      };
    },
    async connect(node) {
      const socket = openNodeStream(base, network.name, node.peerAddrPort);
      sockets.push(socket);
      await socket.opened;
      return socket;
    },
    close() {
      for (const socket of sockets) socket.close();
    },
  };
}
