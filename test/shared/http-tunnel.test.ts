/**
 * The HTTP-only tunnel's codec (shared/tunnel/http-tunnel.ts) against bytes written out by hand
 * from the gRPC-web and protobuf layouts: messages, the trailer block, the request checks, and a
 * response stream fed to the reader two bytes at a time.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeGrpcMessage } from "../../shared/tunnel/grpc-status.ts";
import {
  createEnvelopeReader,
  decodeFramesBody,
  decodeFramesRequest,
  encodeFramesMessage,
  encodeTrailer,
  HttpTunnelError,
  parseTrailer,
} from "../../shared/tunnel/http-tunnel.ts";

describe("HTTP-only tunnel codec", () => {
  it("writes Frames as a gRPC-web message: flags, u32 length, then key 0x0a and a varint per frame", () => {
    const small = Uint8Array.of(1, 2, 3);
    const large = new Uint8Array(300).fill(7);
    const message = encodeFramesMessage([small, large]);
    // 300 = 0b10_0101100: varint 0xac 0x02.
    const body = [0x0a, 3, 1, 2, 3, 0x0a, 0xac, 0x02, ...large];
    assert.deepEqual([...message], [0, 0, 0, 0x01, body.length - 256, ...body]);
    assert.deepEqual([...encodeFramesMessage([])], [0, 0, 0, 0, 0]);
  });

  it("reads a request's frames as views, and refuses what is not exactly one message", () => {
    const frames: Uint8Array[] = [];
    const count = decodeFramesRequest(Uint8Array.of(0, 0, 0, 0, 5, 0x0a, 1, 9, 0x0a, 0), frames);
    assert.equal(count, 2);
    assert.deepEqual([...frames[0]], [9]);
    assert.equal(frames[1].length, 0, "an empty frame reads as one (the hub refuses it)");
    for (const [body, message] of [
      [Uint8Array.of(0, 0, 0), /holds no gRPC-web message/],
      [Uint8Array.of(1, 0, 0, 0, 0), /flags 0x1: expected 0/],
      [Uint8Array.of(0, 0, 0, 0, 1, 0x0a, 0), /claims 1 bytes but the body holds 2/],
      [Uint8Array.of(0, 0, 0, 0, 2, 0x12, 0), /byte 0 is 0x12, expected field 1/],
      [Uint8Array.of(0, 0, 0, 0, 2, 0x0a, 5), /frame 0 claims 5 bytes but 0 remain/],
      [Uint8Array.of(0, 0, 0, 0, 2, 0x0a, 0x80), /bad length varint/],
    ] as const) {
      assert.throws(
        () => decodeFramesRequest(body, []),
        (error: unknown) => error instanceof HttpTunnelError && message.test(error.message),
      );
    }
  });

  it("a trailer carries status, percent-encoded message and close code, and parses back", () => {
    const trailer = encodeTrailer(10, "peer replaced: 100% ✓", 4409);
    assert.equal(trailer[0], 0x80);
    const text = Buffer.from(trailer.subarray(5)).toString();
    assert.equal(
      text,
      "grpc-status:10\r\ngrpc-message:peer replaced: 100%25 %E2%9C%93\r\nsiderolink-close-code:4409\r\n",
    );
    const fields = parseTrailer(trailer.subarray(5));
    assert.equal(fields.get("grpc-status"), "10");
    assert.equal(fields.get("grpc-message"), "peer replaced: 100% ✓");
    assert.equal(fields.get("siderolink-close-code"), "4409");
    assert.equal(encodeGrpcMessage("plain"), "plain");
  });

  it("reads a stream of messages fed two bytes at a time, and in one chunk, the same", () => {
    const stream = Buffer.concat([
      encodeFramesMessage([]),
      encodeFramesMessage([Uint8Array.of(1, 0, 4), new Uint8Array(200).fill(3)]),
      encodeTrailer(0, "ok"),
    ]);
    const read = (chunk: number) => {
      const seen: string[] = [];
      const reader = createEnvelopeReader((flags, body) => {
        const frames: Uint8Array[] = [];
        seen.push(
          flags === 0x80
            ? `trailer ${parseTrailer(body).get("grpc-message")}`
            : `frames ${Array.from(frames.slice(0, decodeFramesBody(body, frames)), (f) => f.length).join(",")}`,
        );
      });
      for (let at = 0; at < stream.length; at += chunk)
        reader.push(stream.subarray(at, Math.min(at + chunk, stream.length)));
      assert.equal(reader.pending, 0);
      return seen;
    };
    const expected = ["frames ", "frames 3,200", "trailer ok"];
    assert.deepEqual(read(2), expected);
    assert.deepEqual(read(stream.length), expected);
  });

  it("refuses a message longer than the limit before buffering it", () => {
    const reader = createEnvelopeReader(() => {}, 1024);
    assert.throws(() => reader.push(Uint8Array.of(0, 0, 0, 0x04, 0x01)), /1025 bytes is over 1024/);
  });
});
