/**
 * Fuzz targets: each checks, for generated and mutated inputs, that a parser of hostile bytes or
 * text never crashes, never allocates beyond its input, and rejects only with its own typed
 * error. `npm test` runs each a bounded number of times (fuzz.test.ts); `npm run fuzz`
 * (scripts/fuzz.ts) runs the same targets for longer.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { createRelayApp } from "../../relay/app/app.ts";
import { provisionNetwork } from "../../relay/app/connect.ts";
import { initializeNetwork } from "../../relay/app/networks.ts";
import { Hub } from "../../relay/hub/hub.ts";
import type { HubSocket } from "../../relay/hub/socket.ts";
import { createNodeDirectory, type NodeDirectory } from "../../relay/node/directory.ts";
import { openSqliteDatabase, type SqliteDatabase } from "../../relay/node/sqlite.ts";
import { ProvisionRequestSchema } from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseAddrPort, parseInterfaceAddress, parseIPv6 } from "../../shared/net/ip.ts";
import { parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { parseSideroLinkConfig } from "../../shared/siderolink/config.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import { parseKey } from "../../shared/siderolink/keys.ts";
import {
  decodeControl,
  decodeNodeDatagrams,
  decodePeerDatagrams,
  FrameError,
  frameType,
} from "../../shared/tunnel/decode.ts";
import {
  createBatchEncoder,
  encodeAck,
  encodeHello,
  encodePeerEvent,
  encodePeerList,
} from "../../shared/tunnel/encode.ts";
import { CloseCode, FrameType, MAX_FRAME_SIZE } from "../../shared/tunnel/frame.ts";
import { MessageType } from "../../shared/wireguard/constants.ts";
import { DevicePair, sentOfType } from "../wireguard/support/device-pair.ts";
import { MemoryEndpoint } from "../wireguard/support/memory-bind.ts";

export interface FuzzTarget {
  readonly name: string;
  /** Runs the property `runs` times; throws with the shrunk counterexample on failure. */
  run(runs: number, seed?: number): Promise<void>;
}

const bytes = (maxLength: number) => fc.uint8Array({ maxLength });

/** A well-formed frame of any type, to mutate. */
const validFrame = fc.oneof(
  fc
    .array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 8 })
    .map((datagrams) => {
      const encoder = createBatchEncoder(false);
      for (const d of datagrams) encoder.add(d);
      return encoder.finish().slice();
    }),
  fc
    .array(
      fc.tuple(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
      ),
      {
        minLength: 1,
        maxLength: 8,
      },
    )
    .map((items) => {
      const encoder = createBatchEncoder(true);
      for (const [tag, d] of items) encoder.add(d, tag);
      return encoder.finish().slice();
    }),
  fc
    .tuple(fc.nat(255), fc.uint8Array({ minLength: 32, maxLength: 32 }))
    .map(([v, key]) => encodeHello(v, key)),
  fc.nat().map((seq) => encodeAck(seq)),
  fc.nat().map((seq) =>
    encodePeerEvent(FrameType.PeerAdded, seq, {
      publicKey: new Uint8Array(32).fill(1),
      address: new Uint8Array(16).fill(2),
      virtualAddress: new Uint8Array(16).fill(3),
    }),
  ),
  fc.nat(4).map(
    (n) =>
      encodePeerList(
        7,
        Array.from({ length: n }, () => ({
          publicKey: new Uint8Array(32),
          address: new Uint8Array(16),
          virtualAddress: new Uint8Array(16),
        })),
      )[0],
  ),
);

/** A valid frame with a few bytes changed, cut or appended. */
const mutatedFrame = fc
  .tuple(
    validFrame,
    fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }),
    fc.nat(),
    bytes(8),
  )
  .map(([frame, flips, cut, tail]) => {
    const out = frame.slice();
    for (const [at, value] of flips) out[at % out.length] = value;
    const kept = out.subarray(0, out.length - (cut % 3 === 0 ? cut % (out.length + 1) : 0));
    const joined = new Uint8Array(kept.length + tail.length);
    joined.set(kept);
    joined.set(tail, kept.length);
    return joined;
  });

const anyFrame = fc.oneof(bytes(300), mutatedFrame, validFrame);

/** Decoding a frame either works, with views into the frame and no more datagrams than bytes, or throws FrameError. */
function decodeOrFrameError(frame: Uint8Array): void {
  const datagrams: Uint8Array[] = [];
  const tags: Uint8Array[] = [];
  try {
    const type = frameType(frame);
    if (type === FrameType.NodeDatagrams || type === FrameType.PeerDatagrams) {
      const count =
        type === FrameType.NodeDatagrams
          ? decodeNodeDatagrams(frame, datagrams)
          : decodePeerDatagrams(frame, tags, datagrams);
      assert.ok(
        count >= 1 && count <= frame.length / 3,
        `count ${count} for ${frame.length} bytes`,
      );
      for (let i = 0; i < count; i++) {
        // Views, not copies: decoding allocates nothing in proportion to the input.
        assert.equal(datagrams[i].buffer, frame.buffer);
        assert.ok(datagrams[i].length > 0);
      }
    } else {
      const message = decodeControl(frame);
      assert.equal(message.type, type);
      if (message.type === FrameType.PeerList) assert.ok(message.peers.length <= frame.length / 64);
    }
  } catch (error) {
    if (!(error instanceof FrameError)) throw error;
    assert.ok(error.closeCode === CloseCode.Malformed || error.closeCode === CloseCode.TooBig);
  }
}

const frameCodec: FuzzTarget = {
  name: "tunnel frame codec: decode never crashes, rejects with FrameError only",
  async run(runs, seed) {
    fc.assert(fc.property(anyFrame, decodeOrFrameError), { numRuns: runs, seed });
    // The size limit is checked first, before any look at the bytes.
    const huge = new Uint8Array(MAX_FRAME_SIZE + 1);
    huge[0] = FrameType.NodeDatagrams;
    assert.throws(
      () => frameType(huge),
      (e: unknown) => e instanceof FrameError && e.kind === "too_big",
    );
  },
};

/** A HubSocket that records what the hub sends and how it closes. */
class RecordingHubSocket implements HubSocket {
  sent = 0;
  closedWith: number | undefined;
  bufferedAmount = 0;
  sendDatagrams(): void {
    this.sent++;
  }
  sendControl(): void {
    this.sent++;
  }
  close(code: number): void {
    this.closedWith ??= code;
  }
  persist(): void {}
}

/** Close codes a hub may answer hostile frames with. */
const HOSTILE_CLOSES = new Set<number>([
  CloseCode.Malformed,
  CloseCode.TooBig,
  CloseCode.UnsupportedVersion,
]);

const uplinkControl: FuzzTarget = {
  name: "uplink and node messages: the hub never throws, closes only the sender with a protocol code",
  async run(runs, seed) {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(anyFrame, fc.string({ maxLength: 8 })), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        async (messages, asUplink) => {
          const hub = new Hub({ hooks: { uplinkHello: async () => {}, peers: async () => [] } });
          const bystander = new RecordingHubSocket();
          hub.attach(bystander, {
            v: 1,
            role: "node",
            virtualAddress: "fdae:41e4:649b:9304::7",
            connectedAt: 0,
          });
          const socket = new RecordingHubSocket();
          hub.attach(
            socket,
            asUplink
              ? { v: 1, role: "uplink", serverPublicKey: null, connectedAt: 0 }
              : { v: 1, role: "node", virtualAddress: "fdae:41e4:649b:9304::8", connectedAt: 0 },
          );
          for (const message of messages) hub.message(socket, message);
          await new Promise((resolve) => setImmediate(resolve));
          if (socket.closedWith !== undefined)
            assert.ok(HOSTILE_CLOSES.has(socket.closedWith), `closed with ${socket.closedWith}`);
          assert.equal(bystander.closedWith, undefined, "another stream was closed");
          hub.closeAll(CloseCode.GoingAway, "done");
        },
      ),
      { numRuns: runs, seed },
    );
  },
};

const PROVISION_CONTENT_TYPES = [
  "application/proto",
  "application/json",
  "application/grpc-web+proto",
  "application/grpc-web-text+proto",
  "application/grpc+proto",
  "application/grpc-web+json",
  "text/plain",
  "",
];

/** A Provision body: random bytes, a real request with damage, or a real request in an envelope. */
const provisionBody = fc.oneof(
  bytes(400),
  fc
    .record({
      nodeUuid: fc.string({ maxLength: 40 }),
      nodePublicKey: fc.string({ maxLength: 60 }),
      joinToken: fc.string({ maxLength: 60 }),
    })
    .chain((fields) => {
      const message = toBinary(ProvisionRequestSchema, create(ProvisionRequestSchema, fields));
      return fc.tuple(
        fc.constant(message),
        fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 3 }),
        fc.boolean(),
      );
    })
    .map(([message, flips, envelope]) => {
      const out = envelope ? new Uint8Array(5 + message.length) : message.slice();
      if (envelope) {
        new DataView(out.buffer).setUint32(1, message.length);
        out.set(message, 5);
      }
      for (const [at, value] of flips) if (out.length > 0) out[at % out.length] = value;
      return out;
    }),
  fc.json().map((text) => new TextEncoder().encode(text)),
);

interface ProvisionLab {
  readonly directory: NodeDirectory;
  readonly database: SqliteDatabase;
  readonly app: ReturnType<typeof createRelayApp>["app"];
  remove(): Promise<void>;
}

async function provisionLab(): Promise<ProvisionLab> {
  const dir = mkdtempSync(join(tmpdir(), "relay-fuzz-"));
  const database = openSqliteDatabase(dir);
  const directory = createNodeDirectory(database);
  await initializeNetwork(await directory.runtime("fuzz"));
  const { app } = createRelayApp({
    directory,
    limits: {
      provisionPerClient: { burst: 1e9, perSecond: 1e9 },
      provisionFailuresPerClient: { burst: 1e9, perSecond: 1e9 },
    },
  });
  return {
    directory,
    database,
    app,
    async remove() {
      await directory.close(CloseCode.GoingAway, "done");
      database.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const provisionDecoding: FuzzTarget = {
  name: "Provision decoding: provisionNetwork and the relay's Provision route answer every body with a typed error",
  async run(runs, seed) {
    const lab = await provisionLab();
    try {
      await fc.assert(
        fc.asyncProperty(
          provisionBody,
          fc.constantFrom(...PROVISION_CONTENT_TYPES),
          async (body, contentType) => {
            const request = () =>
              new Request("http://relay.test/sidero.link.ProvisionService/Provision", {
                method: "POST",
                headers: { "content-type": contentType, "connect-protocol-version": "1" },
                body: body.slice(),
              });
            const network = await provisionNetwork(request());
            assert.ok(network === undefined || typeof network === "string");
            const response = await lab.app.fetch(request());
            const text = await response.text();
            // Every refusal is typed: a gRPC status, or a Connect error code in JSON. Connect
            // reports an undecodable binary message as "internal" (its choice, HTTP 500);
            // anything else at 500 would be an unhandled error in the relay.
            const grpcStatus =
              response.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/.exec(text)?.[1];
            if (response.status === 415) {
              // Unsupported Media Type: an encoding Connect does not serve (grpc-web-text).
            } else if (contentType.startsWith("application/grpc")) {
              assert.ok(grpcStatus !== undefined && grpcStatus !== "0", `no gRPC error: ${text}`);
            } else {
              assert.notEqual(response.status, 200, "a hostile body was provisioned");
              const error = JSON.parse(text) as { code?: unknown; message?: unknown };
              assert.equal(typeof error.code, "string", `untyped error: ${text}`);
              if (response.status === 500) assert.match(String(error.message), /^parse binary: /);
            }
          },
        ),
        { numRuns: runs, seed },
      );
    } finally {
      await lab.remove();
    }
  },
};

const wireguardMessages: FuzzTarget = {
  name: "WireGuard message parsing: a device fed random and mutated datagrams never throws or delivers them",
  async run(runs, seed) {
    const pair = new DevicePair();
    await pair.start();
    try {
      // Real messages to mutate: A's initiation, B's response and a transport message.
      pair.handshake();
      const initiation = sentOfType(pair.network, "192.0.2.1:51820", MessageType.Initiation)[0];
      const response = sentOfType(pair.network, "192.0.2.2:51820", MessageType.Response)[0];
      const transport = pair.network.sent.flatMap((b) => b.datagrams).find((d) => d[0] === 4)!;
      assert.ok(initiation && response && transport, "a real handshake to mutate");
      const seeds = [initiation, response, transport];
      const from = new MemoryEndpoint("192.0.2.1:51820");
      const datagram = fc.oneof(
        bytes(300),
        fc
          .tuple(
            fc.constantFrom(...seeds),
            fc.array(fc.tuple(fc.nat(), fc.nat(255)), { minLength: 1, maxLength: 4 }),
            fc.nat(),
          )
          .map(([original, flips, cut]) => {
            const out = original.slice();
            for (const [at, value] of flips) out[at % out.length] = value;
            return cut % 4 === 0 ? out.subarray(0, cut % out.length) : out;
          }),
      );
      fc.assert(
        fc.property(fc.array(datagram, { minLength: 1, maxLength: 8 }), (datagrams) => {
          pair.b.bind.receive(
            datagrams.map((d) => d.slice()),
            from,
          );
          pair.settle();
          // A forged or damaged datagram never authenticates, so nothing reaches B's TUN.
          assert.deepEqual(pair.b.tun.take(), []);
        }),
        { numRuns: runs, seed },
      );
    } finally {
      await pair.close();
    }
  },
};

/** Calls `parse` and accepts only success or a SideroLinkError. */
function parsesOrSideroLinkError(parse: () => unknown): void {
  try {
    parse();
  } catch (error) {
    if (!(error instanceof SideroLinkError)) throw error;
  }
}

const apiUrlText = fc.oneof(
  fc.string({ maxLength: 120 }),
  fc
    .tuple(
      fc.constantFrom("", "grpc://", "https://", "http://", "tcp://", "://", "https:/"),
      fc.oneof(
        fc.domain(),
        fc.ipV4(),
        fc.ipV6().map((a) => `[${a}]`),
        fc.string({ maxLength: 20 }),
      ),
      fc.oneof(
        fc.constant(""),
        fc.integer({ min: -5, max: 70_000 }).map((p) => `:${p}`),
      ),
      fc.oneof(fc.constant(""), fc.webPath()),
      fc.oneof(
        fc.constant(""),
        fc.webQueryParameters().map((q) => `?${q}`),
        fc.constant("?jointoken=a.b&grpc_tunnel=true"),
      ),
    )
    .map((parts) => parts.join("")),
);

const configText = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc
    .record({
      apiVersion: fc.oneof(fc.constant("v1alpha1"), fc.string({ maxLength: 10 })),
      kind: fc.oneof(fc.constant("SideroLinkConfig"), fc.string({ maxLength: 10 })),
      apiUrl: fc.oneof(apiUrlText, fc.integer(), fc.constant(null)),
      uniqueToken: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(undefined)),
    })
    .map((doc) =>
      Object.entries(doc)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
        .join("\n"),
    ),
  fc.string({ maxLength: 60 }).map((s) => `apiVersion: v1alpha1\nkind: SideroLinkConfig\n${s}`),
);

const parsers: FuzzTarget = {
  name: "URL, config, address and key parsers: success or SideroLinkError, never another throw",
  async run(runs, seed) {
    fc.assert(
      fc.property(apiUrlText, (text) => parsesOrSideroLinkError(() => parseApiUrl(text))),
      { numRuns: runs, seed },
    );
    fc.assert(
      fc.property(configText, (text) => parsesOrSideroLinkError(() => parseSideroLinkConfig(text))),
      {
        numRuns: runs,
        seed,
      },
    );
    const addressish = fc.oneof(
      fc.string({ maxLength: 50 }),
      fc.ipV6(),
      fc.ipV6().map((a) => `[${a}]:${a.length * 997}`),
      fc.ipV6().map((a) => `${a}/${a.length}`),
    );
    fc.assert(
      fc.property(addressish, (text) => {
        parsesOrSideroLinkError(() => parseIPv6(text));
        parsesOrSideroLinkError(() => parseAddrPort(text));
        parsesOrSideroLinkError(() => parseInterfaceAddress(text));
        parsesOrSideroLinkError(() => parseKey(text, "key"));
      }),
      { numRuns: runs, seed },
    );
  },
};

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  frameCodec,
  uplinkControl,
  provisionDecoding,
  wireguardMessages,
  parsers,
];
