/**
 * Process lifecycle of the long-running roles: SIGINT/SIGTERM turn into one AbortSignal that
 * every wait observes, and start-up retries back off with jitter while saying why.
 */
import type { Logger } from "./log.ts";

export interface Shutdown {
  readonly signal: AbortSignal;
  /** Resolves with the reason once a signal arrived or `stop` was called. */
  readonly requested: Promise<string>;
  /** Ends the process's work from inside (a fatal error), with the exit status to return. */
  stop(reason: string, exitCode: number): void;
  readonly exitCode: number;
  /** Removes the signal handlers. */
  dispose(): void;
}

export function watchShutdown(): Shutdown {
  const controller = new AbortController();
  let exitCode = 0;
  let resolveRequested!: (reason: string) => void;
  const requested = new Promise<string>((resolve) => {
    resolveRequested = resolve;
  });
  const stop = (reason: string, code: number): void => {
    if (controller.signal.aborted) return;
    exitCode = code;
    controller.abort(new Error(reason));
    resolveRequested(reason);
  };
  const onSignal = (signal: NodeJS.Signals): void => stop(`received ${signal}`, 0);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return {
    signal: controller.signal,
    requested,
    stop,
    get exitCode() {
      return exitCode;
    },
    dispose() {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    },
  };
}

/** Resolves after `ms`, or early (false) when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Start-up backoff: 1 s doubling to 30 s, +-20 %. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class RetriesExhausted extends Error {
  override readonly name = "RetriesExhausted";
}

/**
 * Runs `attempt` until it succeeds, retrying errors `retryable` accepts with backoff and a log
 * line for each. Gives up with RetriesExhausted after `timeoutMs` (0: never), and with the
 * abort reason when `signal` aborts.
 */
export async function retryWithBackoff<T>(options: {
  readonly what: string;
  readonly attempt: () => Promise<T>;
  readonly retryable: (error: unknown) => boolean;
  readonly log: Logger;
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
}): Promise<T> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await options.attempt();
    } catch (error) {
      if (!options.retryable(error)) throw error;
      const message = (error as Error).message;
      const delay = backoffDelay(attempt);
      if (options.timeoutMs > 0 && Date.now() - started + delay > options.timeoutMs) {
        throw new RetriesExhausted(
          `${options.what} failed for ${Math.round((Date.now() - started) / 1000)} s: ${message}`,
          { cause: error },
        );
      }
      options.log.warn(`${options.what} failed; retrying`, {
        error: message,
        attempt: attempt + 1,
        retryInMs: delay,
      });
      if (!(await sleep(delay, options.signal))) throw options.signal.reason;
    }
  }
}
