/**
 * Structured logs for the long-running roles: one JSON object per line on standard error,
 * `{"time":"...","level":"info","scope":"join","msg":"...", ...fields}`. LOG_LEVEL (debug, info,
 * warn, error) sets the floor, as for the `wireguard` command.
 *
 * Secrets never reach the log: callers pass URLs through `redactUrl`, and field names that
 * carry credentials are masked here as a second line of defence.
 */
import type { Logger } from "./log.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface JsonLogger extends Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger whose lines carry `fields` too. */
  with(fields: LogFields): JsonLogger;
}

const Rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SecretField = /token|secret|private|password/i;

export function createJsonLogger(
  scope: string,
  write: (line: string) => void = (line) => process.stderr.write(line),
  level: LogLevel = levelFromEnv(),
): JsonLogger {
  const build = (base: LogFields): JsonLogger => {
    const log = (at: LogLevel, message: string, fields?: LogFields): void => {
      if (Rank[at] < Rank[level]) return;
      const entry: Record<string, unknown> = {
        time: new Date().toISOString(),
        level: at,
        scope,
        msg: message,
      };
      for (const source of [base, fields]) {
        if (!source) continue;
        for (const [key, value] of Object.entries(source)) {
          if (value === undefined) continue;
          entry[key] = SecretField.test(key) ? "[redacted]" : value;
        }
      }
      write(`${JSON.stringify(entry)}\n`);
    };
    return {
      debug: (message, fields) => log("debug", message, fields),
      info: (message, fields) => log("info", message, fields),
      warn: (message, fields) => log("warn", message, fields),
      error: (message, fields) => log("error", message, fields),
      with: (fields) => build({ ...base, ...fields }),
    };
  };
  return build({});
}

function levelFromEnv(): LogLevel {
  const value = (process.env.LOG_LEVEL ?? "info").toLowerCase();
  if (value === "verbose") return "debug";
  return value in Rank ? (value as LogLevel) : "info";
}

/** The URL without its query and user info, which carry join tokens and credentials. */
export function redactUrl(text: string): string {
  const query = text.search(/[?#]/);
  const base = query < 0 ? text : text.slice(0, query);
  const redacted = base.replace(/\/\/[^/@]*@/, "//");
  return query < 0 ? redacted : `${redacted}?[redacted]`;
}
