/**
 * The kernel log receiver: what a Talos machine's `talos.logging.kernel=tcp://[SERVER]:PORT`
 * points at. Talos sends one JSON object per line over a TCP connection it keeps open
 * (siderolabs/talos internal/app/machined/pkg/runtime/logging/sender_jsonlines.go; the kernel
 * messages come from internal/app/machined/pkg/controllers/runtime/kmsg_log.go):
 *
 *   {"msg":"...","talos-time":"<RFC 3339>","talos-level":"info","facility":"kern",
 *    "priority":"info","seq":123,"clock":456789}
 *
 * SideroLink's agent reads the same stream (siderolabs/siderolink pkg/logreceiver/server.go).
 * Here each line becomes a record `{kind:"log", receivedAt, node, nodeUuid?, payload}`. A line
 * that is not a JSON object is counted as malformed and one longer than `maxLineBytes` as
 * oversized; both are dropped and the connection carries on with the next line. Connections
 * from an address that is not a provisioned node are closed at once and counted as refused.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "../log.ts";
import type { NodeIdentity, NodeResolver } from "./nodes.ts";
import { listen, type OverlayService, RefusalLog } from "./overlay-service.ts";
import type { RecordCounters, RecordWriter } from "./records.ts";

/** Far above a kernel message (the kernel caps one at about 1 KiB) with Talos's fields. */
export const DEFAULT_MAX_LOG_LINE_BYTES = 16 * 1024;
const NEWLINE = 0x0a;

export interface LogReceiverOptions {
  /** The server's overlay address: the only address listened on. */
  readonly host: string;
  readonly port: number;
  readonly resolveNode: NodeResolver;
  readonly records: RecordWriter;
  readonly counters: RecordCounters;
  readonly log: Logger;
  readonly maxLineBytes?: number;
}

export async function startLogReceiver(options: LogReceiverOptions): Promise<OverlayService> {
  const { counters, log } = options;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LOG_LINE_BYTES;
  const sockets = new Set<Socket>();
  const refusals = new RefusalLog(log, "kernel log");

  const serve = async (socket: Socket): Promise<void> => {
    socket.pause();
    const node = await options.resolveNode(socket.remoteAddress);
    if (node === undefined) {
      counters.refused++;
      refusals.note(socket.remoteAddress);
      socket.destroy();
      return;
    }
    const lines = new LineSplitter(
      maxLineBytes,
      (line) => record(node, line),
      () => {
        counters.oversized++;
      },
    );
    socket.on("data", (chunk: Buffer) => lines.push(chunk));
    socket.on("end", () => {
      lines.end();
      socket.end();
    });
    socket.resume();
  };

  const record = (node: NodeIdentity, line: Buffer): void => {
    let payload: unknown;
    try {
      payload = JSON.parse(line.toString("utf8"));
    } catch {
      payload = undefined;
    }
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      counters.malformed++;
      return;
    }
    options.records.write(
      JSON.stringify({
        kind: "log",
        receivedAt: new Date().toISOString(),
        node: node.address,
        nodeUuid: node.uuid,
        payload,
      }),
    );
  };

  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    serve(socket).catch((error: unknown) => {
      log.error("kernel log connection failed", { error: String(error) });
      socket.destroy();
    });
  });
  await listen(
    server,
    options.host,
    options.port,
    "the kernel log receiver",
    "--log-receiver-port",
  );
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : options.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Splits a byte stream into lines without holding more than `maxLineBytes` of one: a longer
 * line is reported once to `onOversized` and skipped up to its newline. A last line without a
 * newline is taken at the end of the stream.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  readonly #onLine: (line: Buffer) => void;
  readonly #onOversized: () => void;
  #parts: Buffer[] = [];
  #bytes = 0;
  #skipping = false;

  constructor(maxLineBytes: number, onLine: (line: Buffer) => void, onOversized: () => void) {
    this.#maxLineBytes = maxLineBytes;
    this.#onLine = onLine;
    this.#onOversized = onOversized;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline < 0 ? chunk.length : newline;
      if (!this.#skipping) {
        if (this.#bytes + (end - start) > this.#maxLineBytes) {
          this.#onOversized();
          this.#parts = [];
          this.#bytes = 0;
          this.#skipping = true;
        } else if (end > start) {
          this.#parts.push(chunk.subarray(start, end));
          this.#bytes += end - start;
        }
      }
      if (newline < 0) return;
      if (this.#skipping) this.#skipping = false;
      else this.#emit();
      start = newline + 1;
    }
  }

  end(): void {
    if (!this.#skipping && this.#bytes > 0) this.#emit();
    this.#parts = [];
    this.#bytes = 0;
    this.#skipping = false;
  }

  #emit(): void {
    const line = this.#parts.length === 1 ? this.#parts[0] : Buffer.concat(this.#parts);
    this.#parts = [];
    this.#bytes = 0;
    // Blank lines (a bare "\n" or "\r\n") carry nothing and are not an error.
    if (line.length === 0 || (line.length === 1 && line[0] === 0x0d)) return;
    this.#onLine(line);
  }
}
