/**
 * A Node single executable application: a stripped copy of the official Node binary with the
 * program's bundle injected as the NODE_SEA_BLOB resource (postject). The binary is stripped
 * before injection: stripping afterwards would drop the injected note.
 */
import { chmodSync, copyFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { run } from "./run.ts";

/** The fuse Node checks to know a blob was injected (src/node_sea.cc). */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

export function buildExecutable(options: {
  readonly nodeBinary: string;
  readonly strip: string;
  readonly mainScript: string;
  readonly workDirectory: string;
  readonly output: string;
}): void {
  const { nodeBinary, strip, mainScript, workDirectory, output } = options;
  const blob = join(workDirectory, "sea-prep.blob");
  const config = join(workDirectory, "sea-config.json");
  // No code cache or snapshot: those are specific to the CPU that makes the blob, and the
  // blob is made here once for every target.
  writeFileSync(
    config,
    JSON.stringify({
      main: mainScript,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: false,
      useSnapshot: false,
    }),
  );
  run(process.execPath, ["--experimental-sea-config", config]);
  copyFileSync(nodeBinary, output);
  chmodSync(output, 0o755);
  run(strip, ["--strip-all", output]);
  const postject = createRequire(import.meta.url).resolve("postject/dist/cli.js");
  run(process.execPath, [postject, output, "NODE_SEA_BLOB", blob, "--sentinel-fuse", SEA_FUSE]);
}
