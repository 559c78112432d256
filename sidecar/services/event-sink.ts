/**
 * The events sink: what a Talos machine's `talos.events.sink=[SERVER]:PORT` points at. Talos
 * dials it with plain gRPC over HTTP/2 (no TLS) and calls `events.EventSinkService/Publish`
 * once per event, in order, the next only after the last was answered
 * (siderolabs/talos internal/app/machined/pkg/controllers/runtime/events_sink.go; the service
 * is siderolabs/siderolink api/events/events.proto, served there by pkg/events/sink.go).
 *
 * Each event becomes a record `{kind:"event", receivedAt, node, nodeUuid?, id, actorId,
 * typeUrl, payload}`: `payload` is the message as protobuf JSON when its type is one of
 * Talos's machine events (shared/proto/machine/machine.proto), otherwise `payloadBase64`
 * holds its bytes.
 *
 * A publish from an address that is not a provisioned node fails with PermissionDenied. A
 * malformed or oversized event is counted and dropped, but answered with success: Talos stops
 * at a failed Publish and retries that same event for ever, so refusing one bad event would
 * stall the machine's whole event stream.
 */
import * as http2 from "node:http2";
import {
  createRegistry,
  fromBinary,
  type JsonValue,
  type Registry,
  toJson,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { file_common_common } from "../../shared/gen/common/common_pb.ts";
import {
  type EventRequest,
  type EventResponse,
  EventSinkService,
} from "../../shared/gen/events/events_pb.ts";
import { file_machine_machine } from "../../shared/gen/machine/machine_pb.ts";
import type { Logger } from "../log.ts";
import type { NodeResolver } from "./nodes.ts";
import { listen, type OverlayService, RefusalLog } from "./overlay-service.ts";
import type { RecordCounters, RecordWriter } from "./records.ts";

/** Largest event payload recorded; Talos's events are a few hundred bytes. */
export const DEFAULT_MAX_EVENT_BYTES = 64 * 1024;
/** Largest gRPC message read at all; grpc answers ResourceExhausted above it, uncounted. */
const MAX_REQUEST_BYTES = 1024 * 1024;
const TYPE_URL_PREFIX = "type.googleapis.com/";
const MACHINE_PACKAGE = "machine.";

const remoteAddressKey = createContextKey<string | undefined>(undefined, {
  description: "the TCP source address of the call",
});

/** Talos's machine events, and what they embed (common.Error), for decoding and JSON. */
const eventTypes: Registry = createRegistry(file_machine_machine, file_common_common);

export interface EventSinkOptions {
  /** The server's overlay address: the only address listened on. */
  readonly host: string;
  readonly port: number;
  readonly resolveNode: NodeResolver;
  readonly records: RecordWriter;
  readonly counters: RecordCounters;
  readonly log: Logger;
  readonly maxEventBytes?: number;
}

export async function startEventSink(options: EventSinkOptions): Promise<OverlayService> {
  const { counters } = options;
  const maxEventBytes = options.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
  const refusals = new RefusalLog(options.log, "an event");

  const publish = async (
    request: EventRequest,
    context: HandlerContext,
  ): Promise<Partial<EventResponse>> => {
    const remoteAddress = context.values.get(remoteAddressKey);
    const node = await options.resolveNode(remoteAddress);
    if (node === undefined) {
      counters.refused++;
      refusals.note(remoteAddress);
      throw new ConnectError(
        `peer not allowed: ${remoteAddress} is not a node of this network`,
        Code.PermissionDenied,
      );
    }
    const data = request.data;
    if (data === undefined || data.typeUrl === "") {
      counters.malformed++;
      return {};
    }
    if (data.value.length > maxEventBytes) {
      counters.oversized++;
      return {};
    }
    const decoded = decodeEvent(data.typeUrl, data.value);
    if (decoded === MALFORMED) {
      counters.malformed++;
      return {};
    }
    options.records.write(
      JSON.stringify({
        kind: "event",
        receivedAt: new Date().toISOString(),
        node: node.address,
        nodeUuid: node.uuid,
        id: request.id,
        actorId: request.actorId,
        typeUrl: data.typeUrl,
        ...(decoded === UNKNOWN
          ? { payloadBase64: Buffer.from(data.value).toString("base64") }
          : { payload: decoded }),
      }),
    );
    return {};
  };

  const handler = connectNodeAdapter({
    readMaxBytes: MAX_REQUEST_BYTES,
    grpc: true,
    grpcWeb: false,
    connect: false,
    contextValues: (request) =>
      createContextValues().set(remoteAddressKey, request.socket?.remoteAddress),
    routes: (router) => router.service(EventSinkService, { publish }),
  });
  const server = http2.createServer(handler);
  const sessions = new Set<http2.Http2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await listen(server, options.host, options.port, "the events sink", "--event-sink-port");
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : options.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}

const MALFORMED = Symbol("malformed");
const UNKNOWN = Symbol("unknown type");

/**
 * A machine event as protobuf JSON; UNKNOWN for a type Talos's machine API does not define
 * (recorded as bytes), MALFORMED when the bytes do not parse as the type they claim.
 */
function decodeEvent(
  typeUrl: string,
  value: Uint8Array,
): JsonValue | typeof MALFORMED | typeof UNKNOWN {
  const name = typeUrl.startsWith(TYPE_URL_PREFIX) ? typeUrl.slice(TYPE_URL_PREFIX.length) : "";
  const schema = name.startsWith(MACHINE_PACKAGE) ? eventTypes.getMessage(name) : undefined;
  if (schema === undefined) return UNKNOWN;
  let message: ReturnType<typeof fromBinary>;
  try {
    message = fromBinary(schema, value);
  } catch {
    return MALFORMED;
  }
  try {
    return toJson(schema, message, { registry: eventTypes });
  } catch {
    // An Any inside (a SequenceEvent error's details) of a type not vendored here.
    return UNKNOWN;
  }
}
