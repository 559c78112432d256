/** Running the Node relay as a process: listen, log, and shut down cleanly on SIGINT/SIGTERM. */
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
