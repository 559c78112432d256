/**
 * The server role's services for its nodes, on the server's overlay address: the events sink
 * and the kernel log receiver, each writing its records file. What `serve --records-dir`
 * (or `--records-stdout`) turns on.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.ts";
import { startEventSink } from "./event-sink.ts";
import { startLogReceiver } from "./log-receiver.ts";
import type { NodeResolver } from "./nodes.ts";
import type { OverlayService } from "./overlay-service.ts";
import { createRecordCounters, createRecordWriter, type RecordCounters } from "./records.ts";

/** The ports Omni gives Talos in `talos.events.sink` and `talos.logging.kernel`. */
export const DEFAULT_EVENT_SINK_PORT = 8090;
export const DEFAULT_LOG_RECEIVER_PORT = 8092;
export const EVENTS_FILE = "events.jsonl";
export const LOGS_FILE = "logs.jsonl";

export interface OverlayServicesSettings {
  /** 0 turns the events sink off. */
  readonly eventSinkPort: number;
  /** 0 turns the kernel log receiver off. */
  readonly logReceiverPort: number;
  /** Where events.jsonl and logs.jsonl go; undefined writes standard output only. */
  readonly recordsDir: string | undefined;
  readonly stdout: boolean;
  readonly maxFileBytes: number;
  readonly keepFiles: number;
}

export interface OverlayServicesOptions extends OverlayServicesSettings {
  /** The server's overlay address, without prefix length. */
  readonly host: string;
  readonly resolveNode: NodeResolver;
  readonly log: Logger;
}

export interface OverlayServices {
  /** Counters by service name ("events", "logs"), for status and metrics. */
  readonly counters: Readonly<Record<string, Readonly<RecordCounters>>>;
  close(): Promise<void>;
}

export async function startOverlayServices(
  options: OverlayServicesOptions,
): Promise<OverlayServices> {
  const { log } = options;
  if (options.recordsDir !== undefined) mkdirSync(options.recordsDir, { recursive: true });
  const counters: Record<string, RecordCounters> = {};
  const started: { close(): Promise<void> }[] = [];
  const closeAll = async (): Promise<void> => {
    for (const service of started.reverse()) await service.close();
    started.length = 0;
  };

  const writer = (name: string, file: string) => {
    const serviceCounters = createRecordCounters();
    counters[name] = serviceCounters;
    const path = options.recordsDir === undefined ? undefined : join(options.recordsDir, file);
    let reported = false;
    const records = createRecordWriter({
      path,
      maxBytes: options.maxFileBytes,
      keep: options.keepFiles,
      stdout: options.stdout,
      counters: serviceCounters,
      onError(error) {
        if (reported) return;
        reported = true;
        log.error(`cannot write ${path}; records are lost until it can be written`, {
          error: error.message,
        });
      },
    });
    started.push({ close: async () => records.close() });
    return { records, counters: serviceCounters };
  };

  const running = (service: OverlayService, what: string, file: string): void => {
    started.push(service);
    log.info(`${what} listening`, {
      address: `[${options.host}]:${service.port}`,
      records: options.recordsDir === undefined ? "stdout" : join(options.recordsDir, file),
    });
  };

  try {
    if (options.eventSinkPort !== 0) {
      const sink = await startEventSink({
        host: options.host,
        port: options.eventSinkPort,
        resolveNode: options.resolveNode,
        log,
        ...writer("events", EVENTS_FILE),
      });
      running(sink, "events sink", EVENTS_FILE);
    }
    if (options.logReceiverPort !== 0) {
      const receiver = await startLogReceiver({
        host: options.host,
        port: options.logReceiverPort,
        resolveNode: options.resolveNode,
        log,
        ...writer("logs", LOGS_FILE),
      });
      running(receiver, "kernel log receiver", LOGS_FILE);
    }
  } catch (error) {
    await closeAll();
    throw error;
  }
  return { counters, close: closeAll };
}
