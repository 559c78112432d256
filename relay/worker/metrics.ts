/**
 * GET /metrics on Workers: every network's counters live in its own Durable Object, so the
 * Worker asks each object for its Prometheus text and merges the answers into one exposition,
 * with the Provision refusals the directory object counted for no network (edge refusals) and its
 * count of other requests for networks that do not exist.
 * Every counter is exact: each lives in SQLite (a network object's, or the directory's).
 */
import { formatLabels } from "../../shared/prometheus.ts";
import { DIRECTORY_NAME, type Env } from "./env.ts";

const PROVISIONS = "siderolink_relay_provisions_total";
const UNKNOWN_NETWORK = "siderolink_relay_unknown_network_requests_total";

/** Adds Provision results that no network's object keeps to the directory's counts. */
export async function countEdgeProvisions(env: Env, counts: Record<string, number>): Promise<void> {
  if (!Object.values(counts).some((count) => count > 0)) return;
  await env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME)).countProvisions(counts);
}

/** Each network's /v1/networks/:network/metrics, fetched with the caller's credentials. */
export async function collectMetrics(request: Request, env: Env): Promise<string> {
  const directory = env.DIRECTORY.get(env.DIRECTORY.idFromName(DIRECTORY_NAME));
  const names = await directory.list();
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
  const edge = await directory.provisionCounts();
  const lines = Object.entries(edge).map(
    ([code, count]) => `${PROVISIONS}{${formatLabels({ code })}} ${count}`,
  );
  if (lines.length > 0) {
    texts.push(
      `# HELP ${PROVISIONS} Provision calls by result code.\n# TYPE ${PROVISIONS} counter\n${lines.join("\n")}\n`,
    );
  }
  const unknown = Object.entries(await directory.unknownNetworkCounts()).map(
    ([route, count]) => `${UNKNOWN_NETWORK}{${formatLabels({ route })}} ${count}`,
  );
  if (unknown.length > 0) {
    texts.push(
      `# HELP ${UNKNOWN_NETWORK} Requests refused at the edge because their network does not exist (tunnel, uplink, admin), by route.\n# TYPE ${UNKNOWN_NETWORK} counter\n${unknown.join("\n")}\n`,
    );
  }
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
