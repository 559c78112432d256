/** Reproducible tar.gz archives: sorted, owned by root, dated by the last commit. */
import { basename, dirname } from "node:path";
import { run } from "./run.ts";

/** Seconds since the epoch of the last commit, for file dates inside archives and packages. */
export function sourceDateEpoch(repository: string): string {
  return (
    process.env.SOURCE_DATE_EPOCH ??
    run("git", ["-C", repository, "log", "-1", "--format=%ct"]).trim()
  );
}

/** Packs `directory` (as its own top-level folder) into `output`. */
export function tarGz(directory: string, output: string, epoch: string): void {
  run("tar", [
    "--sort=name",
    "--owner=0",
    "--group=0",
    "--numeric-owner",
    `--mtime=@${epoch}`,
    "--use-compress-program=gzip -n -9",
    "-cf",
    output,
    "-C",
    dirname(directory),
    basename(directory),
  ]);
}
