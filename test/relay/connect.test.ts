/**
 * provisionNetwork: how an edge reads the network from a Provision body before any network state
 * is touched, for each encoding a client may send. Envelopes are built byte by byte here, from
 * the gRPC wire layout (u8 flags, u32 big-endian length, message), not by the code under test.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { provisionNetwork } from "../../relay/app/connect.ts";
import { ProvisionRequestSchema } from "../../shared/gen/sidero/link/provision_pb.ts";

const message = toBinary(
  ProvisionRequestSchema,
  create(ProvisionRequestSchema, { nodeUuid: "u", nodePublicKey: "k", joinToken: "edge-7.secret" }),
);

function envelope(flags: number, data: Uint8Array, declared = data.length): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, declared);
  out.set(data, 5);
  return out;
}

function request(contentType: string, body: Uint8Array | string): Request {
  return new Request("http://relay.test/sidero.link.ProvisionService/Provision", {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
}

describe("provisionNetwork", () => {
  it("reads the join token's network from every encoding", async () => {
    const json = toJsonString(
      ProvisionRequestSchema,
      create(ProvisionRequestSchema, { joinToken: "edge-7.secret" }),
    );
    const cases: [string, Uint8Array | string][] = [
      ["application/proto", message],
      ["application/json", json],
      ["application/grpc-web+proto", envelope(0, message)],
      ["application/grpc+proto", envelope(0, message)],
      ["application/grpc-web+json", envelope(0, new TextEncoder().encode(json))],
      ["application/grpc-web-text", btoa(String.fromCharCode(...envelope(0, message)))],
    ];
    for (const [contentType, body] of cases) {
      assert.equal(await provisionNetwork(request(contentType, body)), "edge-7", contentType);
    }
  });

  it("reads only the first envelope of a body that carries more", async () => {
    const other = toBinary(
      ProvisionRequestSchema,
      create(ProvisionRequestSchema, { joinToken: "other.secret" }),
    );
    const body = new Uint8Array([...envelope(0, message), ...envelope(0, other)]);
    assert.equal(await provisionNetwork(request("application/grpc-web+proto", body)), "edge-7");
  });

  it("names no network for a compressed, truncated or empty envelope", async () => {
    const bodies: [string, Uint8Array][] = [
      ["compressed", envelope(1, message)],
      ["shorter than declared", envelope(0, message, message.length + 10)],
      ["header only", envelope(0, message).subarray(0, 3)],
      ["empty", new Uint8Array(0)],
    ];
    for (const [what, body] of bodies) {
      assert.equal(
        await provisionNetwork(request("application/grpc-web+proto", body)),
        undefined,
        what,
      );
    }
  });
});
