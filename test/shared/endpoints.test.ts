import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import protobuf from "protobufjs";
import { ProvisionResponseSchema } from "../../shared/gen/sidero/link/provision_pb.ts";
import { endpointsFromWire, endpointsToWire } from "../../shared/siderolink/endpoints.ts";

describe("server_endpoint order", () => {
  const cases: [string[], string[]][] = [
    [[], []],
    [["a:51820"], ["a:51820"]],
    [
      ["a:51820", "b:51820"],
      ["b:51820", "a:51820"],
    ],
    [
      ["a:51820", "b:51820", "c:51820"],
      ["c:51820", "b:51820", "a:51820"],
    ],
    [
      ["a", "b", "c", "d"],
      ["d", "b", "c", "a"],
    ],
  ];

  it("swaps first and last on the way out (server side)", () => {
    for (const [preferred, wire] of cases) assert.deepEqual(endpointsToWire(preferred), wire);
  });

  it("swaps them back on the way in (client side)", () => {
    for (const [preferred, wire] of cases) assert.deepEqual(endpointsFromWire(wire), preferred);
  });

  it("leaves its input alone", () => {
    const preferred = ["a", "b", "c"];
    endpointsToWire(preferred);
    endpointsFromWire(preferred);
    assert.deepEqual(preferred, ["a", "b", "c"]);
  });

  it("shows a client that knows one string the preferred endpoint", () => {
    // A decoder from when field 1 was `string server_endpoint = 1`: the last value wins.
    const legacy = new protobuf.Type("ProvisionResponse").add(
      new protobuf.Field("serverEndpoint", 1, "string"),
    );
    new protobuf.Root().add(legacy);
    const response = create(ProvisionResponseSchema, {
      serverEndpoint: endpointsToWire(["preferred:51820", "backup-1:51820", "backup-2:51820"]),
    });
    const decoded = legacy.toObject(legacy.decode(toBinary(ProvisionResponseSchema, response)));
    assert.equal(decoded.serverEndpoint, "preferred:51820");
  });
});
