/**
 * GET /metrics on Workers: every network's counters live in its own Durable Object, so the
 * Worker asks each object for its Prometheus text and merges the answers into one exposition.
 */
import { DIRECTORY_NAME, type Env } from "./env.ts";

/** Each network's /v1/networks/:network/metrics, fetched with the caller's credentials. */
export async function collectMetrics(request: Request, env: Env): Promise<string> {
  const names = await env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME)).list();
  const authorization = request.headers.get("authorization") ?? "";
  const texts = await Promise.all(
    names.map(async (name) => {
      const url = new URL(`/v1/networks/${name}/metrics`, request.url);
      const stub = env.NETWORK.get(env.NETWORK.idFromName(name));
      const response = await stub.fetch(url, { headers: { authorization } });
      if (!response.ok) {
        throw new Error(
          `metrics of network ${name}: HTTP ${response.status} ${await response.text()}`,
        );
      }
      return response.text();
    }),
  );
  return mergeExpositions(texts);
}

/**
 * Merges Prometheus text expositions: one HELP and TYPE per family, samples grouped under it,
 * and samples with the same name and labels in several inputs (relay-wide counters such as
 * provisions by code, which each object counts for its own network) summed.
 */
export function mergeExpositions(texts: readonly string[]): string {
  const families = new Map<string, { meta: string[]; samples: Map<string, number> }>();
  const family = (name: string) => {
    let entry = families.get(name);
    if (!entry) {
      entry = { meta: [], samples: new Map() };
      families.set(name, entry);
    }
    return entry;
  };
  for (const text of texts) {
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const meta = /^# (HELP|TYPE) (\S+) /.exec(line);
      if (meta) {
        const entry = family(meta[2]);
        if (!entry.meta.some((known) => known.startsWith(`# ${meta[1]} `))) entry.meta.push(line);
        continue;
      }
      const space = line.lastIndexOf(" ");
      const series = line.slice(0, space);
      const name = /^[^{ ]+/.exec(series)?.[0] ?? series;
      const { samples } = family(name);
      samples.set(series, (samples.get(series) ?? 0) + Number(line.slice(space + 1)));
    }
  }
  const lines: string[] = [];
  for (const { meta, samples } of families.values()) {
    lines.push(...meta);
    for (const [series, value] of samples) lines.push(`${series} ${value}`);
  }
  return `${lines.join("\n")}\n`;
}
