/**
 * Repeated warnings about one source, logged at most once per interval each: the first at once,
 * the ones inside the interval counted and reported with the next line for that source. A LAN
 * machine retrying a wrong setting every second, or a stranger looping on purpose, writes one
 * line a minute instead of filling the disk. Sources are bounded: past `maxSources` the one
 * heard from longest ago is forgotten.
 */
export interface LogThrottleOptions {
  readonly intervalMs: number;
  readonly maxSources: number;
  readonly now?: () => number;
}

interface Source {
  at: number;
  held: number;
}

export class LogThrottle {
  readonly #sources = new Map<string, Source>();
  readonly #options: LogThrottleOptions;
  readonly #now: () => number;

  constructor(options: LogThrottleOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Whether a line about `source` is to be written now: undefined to hold it back, or how many
   * were held back since the last one written.
   */
  admit(source: string): number | undefined {
    const now = this.#now();
    const known = this.#sources.get(source);
    if (known !== undefined && now - known.at < this.#options.intervalMs) {
      known.held++;
      return undefined;
    }
    const held = known?.held ?? 0;
    // Re-inserted, so the map's order is the order sources were last logged.
    this.#sources.delete(source);
    if (this.#sources.size >= this.#options.maxSources) {
      const oldest = this.#sources.keys().next().value;
      if (oldest !== undefined) this.#sources.delete(oldest);
    }
    this.#sources.set(source, { at: now, held: 0 });
    return held;
  }
}
