/**
 * The tunnel half of a Talos machine for the benchmarks, built from @grpc/grpc-js as the
 * end-to-end suite's Talos machine is (test/e2e/fixtures/talos-machine.ts), in front of a
 * wireguard-go device whose peer endpoint is this process's UDP socket, as Talos's wgtunnel
 * sits in front of its WireGuard device:
 *
 *   node talos-tunnel.ts HOST:PORT JOIN_TOKEN NODE_PUBLIC_KEY UDP_PORT
 *
 * Provisions with wireguard_over_grpc and talos_version v1.11.0, prints the reply as one JSON
 * line, then carries every datagram from 127.0.0.1:UDP_PORT to CreateStream (one PeerPacket
 * each, grpc-js's own framing) and every PeerPacket back to the device's last source address.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createSocket, type RemoteInfo } from "node:dgram";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const [target, joinToken, nodePublicKey, udpPortText] = process.argv.slice(2);
if (!target || !joinToken || !nodePublicKey || !udpPortText) {
  process.stderr.write("usage: talos-tunnel.ts HOST:PORT JOIN_TOKEN NODE_PUBLIC_KEY UDP_PORT\n");
  process.exit(2);
}
const protoRoot = fileURLToPath(new URL("../../shared/proto/", import.meta.url));
const definition = protoLoader.loadSync(
  ["sidero/link/provision.proto", "sidero/link/wireguard.proto"],
  { includeDirs: [protoRoot], keepCase: true, defaults: true },
);
// biome-ignore lint/suspicious/noExplicitAny: grpc-js describes loaded services dynamically
const link = (grpc.loadPackageDefinition(definition).sidero as any).link;
const credentials = grpc.credentials.createInsecure();

interface ProvisionReply {
  server_public_key: string;
  node_address_prefix: string;
  server_address: string;
  grpc_peer_addr_port: string;
}

const provisionClient = new link.ProvisionService(target, credentials);
const reply = await new Promise<ProvisionReply>((resolve, reject) => {
  provisionClient.Provision(
    {
      node_uuid: randomUUID(),
      node_public_key: nodePublicKey,
      join_token: joinToken,
      node_unique_token: randomBytes(16).toString("hex"),
      talos_version: "v1.11.0",
      wireguard_over_grpc: true,
    },
    (error: grpc.ServiceError | null, response: ProvisionReply) =>
      error ? reject(error) : resolve(response),
  );
});
provisionClient.close();

const socket = createSocket("udp4");
let device: RemoteInfo | undefined;
const metadata = new grpc.Metadata();
metadata.set("x-siderolink-ipv6-addr", reply.grpc_peer_addr_port);
const tunnelClient = new link.WireGuardOverGRPCService(target, credentials);
const stream: grpc.ClientDuplexStream<{ Data: Buffer }, { Data: Buffer }> =
  tunnelClient.CreateStream(metadata);
stream.on("data", (packet: { Data: Buffer }) => {
  if (device) socket.send(packet.Data, device.port, device.address);
});
stream.on("error", (error: Error) => {
  process.stderr.write(`talos-tunnel: stream ended: ${error.message}\n`);
  process.exit(1);
});
socket.on("message", (datagram, from) => {
  device = from;
  stream.write({ Data: datagram });
});
await new Promise<void>((resolve) => socket.bind(Number(udpPortText), "127.0.0.1", resolve));
process.stdout.write(`${JSON.stringify(reply)}\n`);
process.once("SIGTERM", () => {
  stream.cancel();
  socket.close();
  process.exit(0);
});
