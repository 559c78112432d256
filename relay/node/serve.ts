/** Running the Node relay as a process: listen, log, and shut down cleanly on SIGINT/SIGTERM. */
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "./connection-limits.ts";
import { type RelayServer, type RelayServerOptions, startRelayServer } from "./server.ts";

export const DEFAULT_LISTEN = "127.0.0.1:8787";
export const DATA_DIR_ENV = "SIDEROLINK_RELAY_DATA";
export const OPERATOR_TOKEN_ENV = "SIDEROLINK_RELAY_OPERATOR_TOKEN";

export function defaultDataDir(): string {
  return process.env[DATA_DIR_ENV] || "./data";
}

/** Splits `HOST:PORT` (`[::1]:8787` for IPv6). */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new RangeError(
      `--listen ${JSON.stringify(text)} is not HOST:PORT; expected e.g. 127.0.0.1:8787 or [::]:443`,
    );
  }
  return { host: match[1] ?? match[2], port };
}

/** Starts the relay and closes it on the first SIGINT or SIGTERM. */
export async function runRelay(options: RelayServerOptions): Promise<RelayServer> {
  const server = await startRelayServer(options);
  const stop = (signal: NodeJS.Signals): void => {
    process.stderr.write(`siderolink-relay: ${signal}: closing streams and the store\n`);
    server.close().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`siderolink-relay: shutdown failed: ${String(error)}\n`);
        process.exit(1);
      },
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  return server;
}

/** `serve` flags for ConnectionLimits, each with its environment variable. */
const CONNECTION_FLAGS = {
  "max-connections": { limit: "maxConnections", env: "SIDEROLINK_RELAY_MAX_CONNECTIONS" },
  "max-connections-per-address": {
    limit: "maxConnectionsPerAddress",
    env: "SIDEROLINK_RELAY_MAX_CONNECTIONS_PER_ADDRESS",
  },
  "max-streams": { limit: "maxConcurrentStreams", env: "SIDEROLINK_RELAY_MAX_STREAMS" },
  "session-memory-mb": { limit: "maxSessionMemoryMb", env: "SIDEROLINK_RELAY_SESSION_MEMORY_MB" },
  "idle-timeout-ms": { limit: "idleSessionTimeoutMs", env: "SIDEROLINK_RELAY_IDLE_TIMEOUT_MS" },
  "provision-deadline-ms": {
    limit: "provisionDeadlineMs",
    env: "SIDEROLINK_RELAY_PROVISION_DEADLINE_MS",
  },
  "first-message-deadline-ms": {
    limit: "firstMessageDeadlineMs",
    env: "SIDEROLINK_RELAY_FIRST_MESSAGE_DEADLINE_MS",
  },
} as const satisfies Record<string, { limit: keyof ConnectionLimits; env: string }>;

type ConnectionFlag = keyof typeof CONNECTION_FLAGS;

/** parseArgs options for the connection-limit flags. */
export const CONNECTION_FLAG_OPTIONS = Object.fromEntries(
  Object.keys(CONNECTION_FLAGS).map((flag) => [flag, { type: "string" }]),
) as Record<ConnectionFlag, { type: "string" }>;

/** Usage lines for the connection-limit flags, with their defaults. */
export const CONNECTION_FLAG_USAGE = Object.entries(CONNECTION_FLAGS)
  .map(
    ([flag, { limit, env }]) =>
      `        --${flag} N  (or $${env}; default ${DEFAULT_CONNECTION_LIMITS[limit]})`,
  )
  .join("\n");

/** ConnectionLimits from flags, then environment variables; a bad number names its source. */
export function connectionLimitsFromFlags(
  values: Partial<Record<ConnectionFlag, string | undefined>>,
  env: NodeJS.ProcessEnv = process.env,
): Partial<ConnectionLimits> {
  const limits: Partial<Record<keyof ConnectionLimits, number>> = {};
  for (const [flag, { limit, env: name }] of Object.entries(CONNECTION_FLAGS)) {
    const fromFlag = values[flag as ConnectionFlag];
    const text = fromFlag ?? (env[name] || undefined);
    if (text === undefined) continue;
    const value = Number(text);
    if (!/^\d+$/.test(text.trim()) || value <= 0) {
      const source = fromFlag === undefined ? `$${name}` : `--${flag}`;
      throw new RangeError(`${source} ${JSON.stringify(text)} is not a positive whole number`);
    }
    limits[limit] = value;
  }
  return limits;
}
