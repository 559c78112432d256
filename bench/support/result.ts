/** What every scenario hands back: a table for the terminal and the docs, targets, raw data. */

export interface Target {
  /** What is measured, e.g. "a-to-b throughput vs wireguard-go". */
  readonly name: string;
  /** The goal as the issue states it, e.g. ">= 0.5x". */
  readonly goal: string;
  /** The measured value in the goal's terms, e.g. "1.08x". */
  readonly value: string;
  readonly met: boolean;
}

export interface ScenarioResult {
  /** "s1" .. "s6". */
  readonly id: string;
  readonly title: string;
  /** How it was measured, one paragraph for docs/benchmarks.md. */
  readonly method: string;
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
  readonly targets: readonly Target[];
  /** Findings worth a sentence: limits, profile evidence, caveats. */
  readonly notes: readonly string[];
  /** 1-minute load average before and after the scenario ran. */
  readonly load: { readonly before: number; readonly after: number };
  readonly seconds: number;
  /** Every sample, for bench/results/<date>.json. */
  readonly data: unknown;
}

export interface ScenarioOptions {
  /** Seconds per measured run (iperf3, load generator). */
  readonly seconds: number;
  readonly repetitions: number;
  /** Short runs and small counts, for checking that a scenario works. */
  readonly quick: boolean;
}

/** Formats a number with `digits` decimals, or "-" when it is not finite. */
export function fixed(value: number, digits = 0): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

/** Formats a ratio as "1.23x". */
export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : "-";
}
