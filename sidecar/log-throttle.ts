/**
 * Repeated warnings about one source, logged at most once per interval each: the first at once,
 * the ones inside the interval counted and reported with the next line for that source. A LAN
 * machine retrying a wrong setting every second writes one line a minute instead of filling the
 * disk. Sources are bounded: a source last logged more than an interval ago is forgotten when
 * room is needed, and past `maxSources` sources inside one interval (a stranger cycling its
 * addresses) the rest share one line an interval, so no more than `maxSources + 1` lines are
 * written per interval however many sources there are.
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
  /** By the time each was last logged, oldest first. */
  readonly #sources = new Map<string, Source>();
  /** The line the sources beyond maxSources share. */
  #overflow: Source | undefined;
  readonly #options: LogThrottleOptions;
  readonly #now: () => number;

  constructor(options: LogThrottleOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Whether a line about `source` is to be written now: undefined to hold it back, or how many
   * were held back since the last line written for it (for sources beyond maxSources, for all
   * of them together).
   */
  admit(source: string): number | undefined {
    const now = this.#now();
    const { intervalMs, maxSources } = this.#options;
    const known = this.#sources.get(source);
    if (known !== undefined) return this.#take(known, now, source);
    for (const [key, entry] of this.#sources) {
      if (now - entry.at < intervalMs) break;
      this.#sources.delete(key);
    }
    if (this.#sources.size < maxSources) {
      this.#sources.set(source, { at: now, held: 0 });
      return 0;
    }
    this.#overflow ??= { at: now - intervalMs, held: 0 };
    return this.#take(this.#overflow, now, undefined);
  }

  /** A line for `entry` if its interval is over; a source's entry moves to the end. */
  #take(entry: Source, now: number, source: string | undefined): number | undefined {
    if (now - entry.at < this.#options.intervalMs) {
      entry.held++;
      return undefined;
    }
    const held = entry.held;
    entry.at = now;
    entry.held = 0;
    if (source !== undefined) {
      this.#sources.delete(source);
      this.#sources.set(source, entry);
    }
    return held;
  }
}
