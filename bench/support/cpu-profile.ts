/** Reading V8 CPU profiles (`node --cpu-prof`) down to the functions that took the most time. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/**
 * The `top` functions by self time across the profiles in `dir`, as "NN% name file:line" (the
 * share of all sampled time, idle included, so a blocked event loop shows where it blocks).
 */
export function topSelfTime(dir: string, top: number): string[] {
  const totals = new Map<string, number>();
  let all = 0;
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"))) {
    const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as Profile;
    const names = new Map(
      profile.nodes.map((node) => {
        const { functionName, url, lineNumber } = node.callFrame;
        const where = url ? ` ${url.split("/").slice(-3).join("/")}:${lineNumber + 1}` : "";
        return [node.id, `${functionName || "(anonymous)"}${where}`];
      }),
    );
    profile.samples.forEach((id, i) => {
      const delta = profile.timeDeltas[i] ?? 0;
      const name = names.get(id) ?? "?";
      totals.set(name, (totals.get(name) ?? 0) + delta);
      all += delta;
    });
  }
  return [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, time]) => `${((100 * time) / all).toFixed(0)}% ${name}`);
}
