/**
 * Where the server's overlay services put what nodes send: one JSON object per line, appended
 * to a file (`events.jsonl`, `logs.jsonl`) and optionally copied to standard output for
 * journald or a log shipper.
 *
 * Lines written in one turn of the event loop go out as one write. A file that would grow past
 * `maxBytes` is rotated first: `NAME` becomes `NAME.1`, `NAME.1` becomes `NAME.2`, and so on up
 * to `keep` old files; the oldest is dropped. Writes are synchronous: records come at the pace
 * of a machine's events and kernel messages, and a sync append keeps them in order and on disk
 * when the process is killed.
 */
import { closeSync, existsSync, fstatSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/** What a service counts about the records it receives; the metrics show each by outcome. */
export interface RecordCounters {
  /** Written. */
  recorded: number;
  /** From an address that is not a provisioned node of the network. */
  refused: number;
  /** Not decodable: a line that is not a JSON object, an event whose payload does not parse. */
  malformed: number;
  /** Above the service's size limit. */
  oversized: number;
  /** Lost because the file could not be written. */
  unwritten: number;
}

export function createRecordCounters(): RecordCounters {
  return { recorded: 0, refused: 0, malformed: 0, oversized: 0, unwritten: 0 };
}

export interface RecordWriterOptions {
  /** The file to append to; undefined writes to standard output only. */
  readonly path: string | undefined;
  /** Rotate before the file would grow past this many bytes. */
  readonly maxBytes: number;
  /** Rotated files kept beside it. */
  readonly keep: number;
  /** Copy every line to standard output as well. */
  readonly stdout: boolean;
  readonly counters: RecordCounters;
  /** Called once per failed write with what went wrong. */
  readonly onError: (error: Error) => void;
  /** Where the copies go (default: process.stdout). */
  readonly writeStdout?: (text: string) => void;
}

export interface RecordWriter {
  /** Queues one record; `record` must not hold a newline (JSON.stringify output never does). */
  write(record: string): void;
  /** Writes what is queued. */
  flush(): void;
  close(): void;
}

/** Default rotation size of a records file. */
export const DEFAULT_RECORDS_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_RECORDS_KEEP = 3;

export function createRecordWriter(options: RecordWriterOptions): RecordWriter {
  const { path, maxBytes, keep, counters } = options;
  const writeStdout = options.writeStdout ?? ((text: string) => void process.stdout.write(text));
  let fd: number | undefined;
  let size = 0;
  let pending: string[] = [];
  let scheduled = false;

  const open = (): number => {
    if (fd === undefined) {
      fd = openSync(path!, "a", 0o640);
      size = fstatSync(fd).size;
    }
    return fd;
  };

  const rotate = (): void => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
    rmSync(`${path}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    }
    if (keep > 0) renameSync(path!, `${path}.1`);
    else rmSync(path!, { force: true });
  };

  const flush = (): void => {
    scheduled = false;
    if (pending.length === 0) return;
    const lines = pending;
    pending = [];
    const text = `${lines.join("\n")}\n`;
    if (options.stdout) writeStdout(text);
    if (path === undefined) {
      counters.recorded += lines.length;
      return;
    }
    try {
      const bytes = Buffer.from(text, "utf8");
      open();
      if (size > 0 && size + bytes.length > maxBytes) {
        rotate();
        open();
      }
      writeSync(fd!, bytes);
      size += bytes.length;
      counters.recorded += lines.length;
    } catch (error) {
      counters.unwritten += lines.length;
      if (fd !== undefined) {
        closeSync(fd);
        fd = undefined;
      }
      options.onError(error as Error);
    }
  };

  return {
    write(record) {
      pending.push(record);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    },
    flush,
    close() {
      flush();
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}
