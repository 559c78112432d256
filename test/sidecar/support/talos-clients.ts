/**
 * What a Talos machine runs against a management server's overlay services, built from parts
 * independent of the sidecar's code: @grpc/grpc-js with the events schema loaded from
 * shared/proto by @grpc/proto-loader, machine events encoded with protobufjs, and a plain TCP
 * socket for kernel-log JSON lines.
 *
 * - Events: Talos dials `talos.events.sink` with insecure gRPC and calls
 *   /events.EventSinkService/Publish with an EventRequest{data: Any, id, actor_id}
 *   (siderolabs/talos internal/app/machined/pkg/controllers/runtime/events_sink.go).
 * - Kernel logs: one JSON object per line over TCP, with msg, talos-time, talos-level,
 *   facility, priority, seq and clock (siderolabs/talos
 *   internal/app/machined/pkg/runtime/logging/sender_jsonlines.go and
 *   internal/app/machined/pkg/controllers/runtime/kmsg_log.go).
 */
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const protoRoot = fileURLToPath(new URL("../../../shared/proto/", import.meta.url));

const machineRoot = new protobuf.Root();
machineRoot.resolvePath = (_origin, target) =>
  target.startsWith("google/") ? target : join(protoRoot, target);
machineRoot.loadSync("machine/machine.proto", { keepCase: true });

/** The bytes of a machine event (`name` like "MachineStatusEvent"), from a plain object. */
export function encodeMachineEvent(name: string, fields: Record<string, unknown>): Uint8Array {
  const type = machineRoot.lookupType(`machine.${name}`);
  return type.encode(type.fromObject(fields)).finish();
}

export const typeUrl = (name: string): string => `type.googleapis.com/machine.${name}`;

export interface EventSinkClient {
  /** Publishes one event; resolves on success, rejects with the gRPC error. */
  publish(typeUrl: string, value: Uint8Array, id: string, actorId?: string): Promise<void>;
  close(): void;
}

export function eventSinkClient(target: string): EventSinkClient {
  const definition = protoLoader.loadSync(["events/events.proto"], {
    includeDirs: [protoRoot],
    keepCase: true,
    defaults: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js describes loaded services dynamically
  const events = (grpc.loadPackageDefinition(definition) as any).events;
  const client = new events.EventSinkService(target, grpc.credentials.createInsecure());
  return {
    publish(url, value, id, actorId = "") {
      return new Promise((resolve, reject) => {
        client.Publish(
          { data: { type_url: url, value: Buffer.from(value) }, id, actor_id: actorId },
          { deadline: new Date(Date.now() + 10_000) },
          (error: grpc.ServiceError | null) => (error ? reject(error) : resolve()),
        );
      });
    },
    close: () => client.close(),
  };
}

/** A kernel message as Talos's JSON-lines sender renders it. */
export function kernelLogLine(seq: number, msg: string): string {
  return `${JSON.stringify({
    msg,
    "talos-time": new Date().toISOString(),
    "talos-level": "info",
    facility: "kern",
    priority: "info",
    seq,
    clock: seq * 1000,
  })}\n`;
}

/** A TCP connection to the log receiver, kept open like Talos keeps its sender's. */
export async function logSender(host: string, port: number): Promise<Socket> {
  const socket = connect({ host, port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return socket;
}

/** Writes and waits until the bytes are handed to the kernel. */
export function send(socket: Socket, text: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    socket.write(text, (error) => (error ? reject(error) : resolve())),
  );
}

/** Resolves when the other end closed the connection (refused or finished). */
export function closedByPeer(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.readableEnded) resolve();
    socket.once("close", () => resolve());
    socket.once("end", () => resolve());
    socket.on("error", () => {});
    socket.resume();
  });
}
