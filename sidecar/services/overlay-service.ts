/**
 * What the server's overlay services (events sink, kernel log receiver) share: listening on
 * the server's overlay address only, and telling the operator about refused sources.
 */
import type { Server } from "node:net";
import type { Logger } from "../log.ts";
import { canonicalAddress } from "./nodes.ts";

export interface OverlayService {
  /** The port listened on (the one asked for, or the one picked for 0). */
  readonly port: number;
  close(): Promise<void>;
}

/** Logs the first refusal of each source address (up to a bound), so a flood stays quiet. */
export class RefusalLog {
  static readonly MaxAddresses = 1024;
  readonly #log: Logger;
  readonly #what: string;
  readonly #seen = new Set<string>();

  constructor(log: Logger, what: string) {
    this.#log = log;
    this.#what = what;
  }

  note(remoteAddress: string | undefined): void {
    const address = canonicalAddress(remoteAddress) ?? String(remoteAddress);
    if (this.#seen.has(address) || this.#seen.size >= RefusalLog.MaxAddresses) return;
    this.#seen.add(address);
    this.#log.warn(`refused ${this.#what} from an address that is not a node of this network`, {
      address,
      hint: "only provisioned nodes may send; see siderolink-relay node list",
    });
  }
}

/**
 * Listens on `host:port`; a failure names the service and the option that picks its port.
 * `what` reads like "the events sink", `option` like "--event-sink-port".
 */
export function listen(
  server: Server,
  host: string,
  port: number,
  what: string,
  option: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException): void =>
      reject(
        new Error(
          `${what} cannot listen on [${host}]:${port}: ${error.code ?? error.message}; ${
            error.code === "EADDRINUSE"
              ? `something else holds the port: choose another with ${option}`
              : "the server address must be on the interface"
          }`,
        ),
      );
    server.once("error", failed);
    server.listen({ host, port, ipv6Only: true }, () => {
      server.off("error", failed);
      resolve();
    });
  });
}
