/**
 * The sidecar's one logger: a line per event on standard error, with a level, a scope and
 * optional fields. Two renderings of the same event:
 *
 * - json (join, serve): `{"time":"...","level":"info","scope":"join","msg":"...", ...fields}`,
 *   for log collectors;
 * - text (wireguard): `2026-01-02T03:04:05.678Z wg0: handshake completed ...`, the
 *   one-line-per-event form wireguard-go users read on a terminal.
 *
 * LOG_FORMAT (json, text) overrides a command's default. LOG_LEVEL (debug, info, warn, error;
 * wireguard-go's `verbose` means debug) sets the floor, so one setting serves wireguard-go too.
 *
 * Secrets never reach the log: callers pass URLs through `redactUrl`, and field names that
 * carry credentials are masked here as a second line of defence.
 */

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "text";
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger whose lines carry `fields` too. */
  with(fields: LogFields): Logger;
}

export interface LoggerOptions {
  readonly write?: (line: string) => void;
  readonly level?: LogLevel;
  /** The rendering when LOG_FORMAT does not choose one (default json). */
  readonly format?: LogFormat;
}

const Rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD = /token|secret|private|password/i;

export function createLogger(scope: string, options: LoggerOptions = {}): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const level = options.level ?? levelFromEnv();
  const render = formatFromEnv(options.format ?? "json") === "text" ? renderText : renderJson;
  const build = (base: LogFields): Logger => {
    const log = (at: LogLevel, message: string, fields?: LogFields): void => {
      if (Rank[at] < Rank[level]) return;
      const shown: Record<string, unknown> = {};
      for (const source of [base, fields]) {
        if (!source) continue;
        for (const [key, value] of Object.entries(source)) {
          if (value === undefined) continue;
          shown[key] = SECRET_FIELD.test(key) ? "[redacted]" : value;
        }
      }
      write(render(new Date().toISOString(), at, scope, message, shown));
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

function renderJson(
  time: string,
  level: LogLevel,
  scope: string,
  message: string,
  fields: Record<string, unknown>,
): string {
  return `${JSON.stringify({ time, level, scope, msg: message, ...fields })}\n`;
}

function renderText(
  time: string,
  _level: LogLevel,
  scope: string,
  message: string,
  fields: Record<string, unknown>,
): string {
  let line = `${time} ${scope}: ${message}`;
  for (const [key, value] of Object.entries(fields)) line += ` ${key}=${String(value)}`;
  return `${line}\n`;
}

function levelFromEnv(): LogLevel {
  const value = (process.env.LOG_LEVEL ?? "info").toLowerCase();
  if (value === "verbose") return "debug";
  return value in Rank ? (value as LogLevel) : "info";
}

function formatFromEnv(fallback: LogFormat): LogFormat {
  const value = process.env.LOG_FORMAT?.toLowerCase();
  return value === "json" || value === "text" ? value : fallback;
}

/** The URL without its query and user info, which carry join tokens and credentials. */
export function redactUrl(text: string): string {
  const query = text.search(/[?#]/);
  const base = query < 0 ? text : text.slice(0, query);
  const redacted = base.replace(/\/\/[^/@]*@/, "//");
  return query < 0 ? redacted : `${redacted}?[redacted]`;
}
