/**
 * The Prometheus text exposition format (version 0.0.4), as far as the relay and the sidecar
 * write it: `name{label="value",...} number` lines under `# HELP` and `# TYPE`.
 */

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * A label value as it goes between double quotes: backslash, double quote and line feed are the
 * three characters the format escapes (`\\`, `\"`, `\n`); a raw line feed would end the sample.
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (ch) => (ch === "\n" ? "\\n" : `\\${ch}`));
}

/** `key="value",...` for the inside of a sample's braces, values escaped. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${key}="${escapeLabelValue(value)}"`)
    .join(",");
}
