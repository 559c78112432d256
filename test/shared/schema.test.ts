import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { loadSync } from "@grpc/proto-loader";
import {
  ProvisionRequestSchema,
  ProvisionResponseSchema,
  ProvisionService,
} from "../../shared/gen/sidero/link/provision_pb.ts";
import {
  PeerPacketSchema,
  WireGuardOverGRPCService,
} from "../../shared/gen/sidero/link/wireguard_pb.ts";

// The independent side: @grpc/proto-loader (protobufjs underneath) reading the same .proto files.
const protoDir = fileURLToPath(new URL("../../shared/proto/", import.meta.url));
const definition = loadSync(["sidero/link/provision.proto", "sidero/link/wireguard.proto"], {
  includeDirs: [protoDir],
  keepCase: true,
});
interface Method {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: object): Buffer;
  requestDeserialize(bytes: Buffer): Record<string, unknown>;
  responseSerialize(value: object): Buffer;
  responseDeserialize(bytes: Buffer): Record<string, unknown>;
}
const provision = (definition["sidero.link.ProvisionService"] as unknown as Record<string, Method>)
  .Provision;
const createStream = (
  definition["sidero.link.WireGuardOverGRPCService"] as unknown as Record<string, Method>
).CreateStream;

const WIRE_VARINT = 0;
const WIRE_LENGTH = 2;

/** Reads the top-level fields of a message by hand: [field number, wire type, payload]. */
function fields(bytes: Uint8Array): [number, number, Uint8Array | number][] {
  const out: [number, number, Uint8Array | number][] = [];
  let offset = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[offset++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (offset < bytes.length) {
    const tag = varint();
    const wireType = tag & 7;
    if (wireType === WIRE_VARINT) out.push([tag >>> 3, wireType, varint()]);
    else if (wireType === WIRE_LENGTH) {
      const length = varint();
      out.push([tag >>> 3, wireType, bytes.subarray(offset, offset + length)]);
      offset += length;
    } else throw new Error(`unexpected wire type ${wireType}`);
  }
  return out;
}
const text = (payload: Uint8Array | number) => new TextDecoder().decode(payload as Uint8Array);

describe("SideroLink schema on the wire", () => {
  it("names the services and methods as SideroLink does", () => {
    assert.equal(
      provision.path,
      `/${ProvisionService.typeName}/${ProvisionService.method.provision.name}`,
    );
    assert.equal(provision.path, "/sidero.link.ProvisionService/Provision");
    assert.equal(createStream.path, "/sidero.link.WireGuardOverGRPCService/CreateStream");
    assert.equal(
      createStream.path,
      `/${WireGuardOverGRPCService.typeName}/${WireGuardOverGRPCService.method.createStream.name}`,
    );
    assert.equal(WireGuardOverGRPCService.method.createStream.methodKind, "bidi_streaming");
    assert.deepEqual([createStream.requestStream, createStream.responseStream], [true, true]);
  });

  it("ProvisionRequest: fields 1-6 with their types, decoded from the independent encoder", () => {
    const bytes = provision.requestSerialize({
      node_uuid: "5f1e0c9a-1111-2222-3333-444455556666",
      node_public_key: "hGq0eP1vEXAMPLEKEYhGq0eP1vEXAMPLEKEYhGq0eP0=",
      join_token: "join-me",
      node_unique_token: "unique",
      talos_version: "v1.9.0",
      wireguard_over_grpc: true,
    });
    assert.deepEqual(
      fields(bytes).map(([number, wireType]) => [number, wireType]),
      [
        [1, WIRE_LENGTH],
        [2, WIRE_LENGTH],
        [3, WIRE_LENGTH],
        [4, WIRE_LENGTH],
        [5, WIRE_LENGTH],
        [6, WIRE_VARINT],
      ],
    );
    const request = fromBinary(ProvisionRequestSchema, bytes);
    assert.equal(request.nodeUuid, "5f1e0c9a-1111-2222-3333-444455556666");
    assert.equal(request.nodePublicKey, "hGq0eP1vEXAMPLEKEYhGq0eP1vEXAMPLEKEYhGq0eP0=");
    assert.equal(request.joinToken, "join-me");
    assert.equal(request.nodeUniqueToken, "unique");
    assert.equal(request.talosVersion, "v1.9.0");
    assert.equal(request.wireguardOverGrpc, true);
  });

  it("ProvisionRequest: encoded here, decoded by the independent decoder", () => {
    const bytes = toBinary(
      ProvisionRequestSchema,
      create(ProvisionRequestSchema, {
        nodeUuid: "uuid",
        nodePublicKey: "key",
        joinToken: "token",
        talosVersion: "v1.10.0",
        wireguardOverGrpc: true,
      }),
    );
    assert.deepEqual(provision.requestDeserialize(Buffer.from(bytes)), {
      node_uuid: "uuid",
      node_public_key: "key",
      join_token: "token",
      talos_version: "v1.10.0",
      wireguard_over_grpc: true,
    });
    assert.deepEqual(
      fields(bytes).map(([number]) => number),
      [1, 2, 3, 5, 6],
    );
  });

  it("ProvisionRequest: optional fields keep presence, plain ones do not", () => {
    const bytes = toBinary(
      ProvisionRequestSchema,
      create(ProvisionRequestSchema, { nodeUuid: "", joinToken: "", wireguardOverGrpc: false }),
    );
    // Tags 0x1a (field 3, length) and 0x30 (field 6, varint), each with an empty/false value.
    assert.deepEqual([...bytes], [0x1a, 0x00, 0x30, 0x00]);
    const independent = provision.requestSerialize({ join_token: "", wireguard_over_grpc: false });
    assert.deepEqual([...independent], [...bytes]);
    const decoded = fromBinary(ProvisionRequestSchema, independent);
    assert.equal(decoded.joinToken, "");
    assert.equal(decoded.wireguardOverGrpc, false);
    assert.equal(decoded.nodeUniqueToken, undefined);
    assert.equal(decoded.talosVersion, undefined);
  });

  it("ProvisionResponse: fields 1, 3, 4, 5, 6, all strings, both ways", () => {
    const values = {
      server_endpoint: ["[fdae:41e4:649b:9304::2]:50888", "203.0.113.7:51820"],
      server_public_key: "c2VydmVyLWtleS1zZXJ2ZXIta2V5LXNlcnZlci1rZXk=",
      node_address_prefix: "fdae:41e4:649b:9303:1234:5678:9abc:def0/64",
      server_address: "fdae:41e4:649b:9303::1",
      grpc_peer_addr_port: "[fdae:41e4:649b:9304::2]:50888",
    };
    const bytes = provision.responseSerialize(values);
    assert.deepEqual(
      fields(bytes).map(([number, wireType, payload]) => [number, wireType, text(payload)]),
      [
        [1, WIRE_LENGTH, values.server_endpoint[0]],
        [1, WIRE_LENGTH, values.server_endpoint[1]],
        [3, WIRE_LENGTH, values.server_public_key],
        [4, WIRE_LENGTH, values.node_address_prefix],
        [5, WIRE_LENGTH, values.server_address],
        [6, WIRE_LENGTH, values.grpc_peer_addr_port],
      ],
    );
    const response = fromBinary(ProvisionResponseSchema, bytes);
    assert.deepEqual(response.serverEndpoint, values.server_endpoint);
    assert.equal(response.serverPublicKey, values.server_public_key);
    assert.equal(response.nodeAddressPrefix, values.node_address_prefix);
    assert.equal(response.serverAddress, values.server_address);
    assert.equal(response.grpcPeerAddrPort, values.grpc_peer_addr_port);

    const ours = toBinary(ProvisionResponseSchema, response);
    assert.deepEqual([...ours], [...bytes]);
    assert.deepEqual(provision.responseDeserialize(Buffer.from(ours)), values);
  });

  it("ProvisionResponse: field 2 is unused, and kept only as an unknown field", () => {
    assert.deepEqual(
      ProvisionResponseSchema.fields.map((field) => field.number),
      [1, 3, 4, 5, 6],
    );
    assert.ok(ProvisionResponseSchema.fields.every((field) => field.number !== 2));
    // Field 2 as a string "old" (tag 0x12), then server_public_key (tag 0x1a) "k".
    const bytes = Uint8Array.of(0x12, 0x03, 0x6f, 0x6c, 0x64, 0x1a, 0x01, 0x6b);
    const response = fromBinary(ProvisionResponseSchema, bytes);
    assert.equal(response.serverPublicKey, "k");
    assert.deepEqual(response.serverEndpoint, []);
    assert.equal(response.nodeAddressPrefix, "");
    assert.equal(response.serverAddress, "");
    assert.equal(response.grpcPeerAddrPort, "");
    assert.deepEqual(
      response.$unknown?.map(({ no, wireType }) => [no, wireType]),
      [[2, WIRE_LENGTH]],
    );
    // Written back after the known fields, so a relay passes it through unchanged in content.
    assert.deepEqual(
      [...toBinary(ProvisionResponseSchema, response)],
      [0x1a, 0x01, 0x6b, 0x12, 0x03, 0x6f, 0x6c, 0x64],
    );
    assert.deepEqual(provision.responseDeserialize(Buffer.from(bytes)), { server_public_key: "k" });
  });

  it("PeerPacket: Data is field 2 (tag byte 0x12), bytes, both ways", () => {
    const datagram = Uint8Array.from({ length: 148 }, (_, i) => (i * 7) & 0xff);
    const ours = toBinary(PeerPacketSchema, create(PeerPacketSchema, { Data: datagram }));
    assert.deepEqual([...ours.subarray(0, 3)], [0x12, 0x94, 0x01]);
    assert.deepEqual(ours.subarray(3), datagram);
    const independent = createStream.requestSerialize({ Data: Buffer.from(datagram) });
    assert.deepEqual([...independent], [...ours]);
    assert.deepEqual(new Uint8Array(fromBinary(PeerPacketSchema, independent).Data), datagram);
    assert.deepEqual(
      new Uint8Array(createStream.responseDeserialize(Buffer.from(ours)).Data as Buffer),
      datagram,
    );
    assert.deepEqual(
      PeerPacketSchema.fields.map((field) => [field.name, field.number]),
      [["Data", 2]],
    );
  });
});
