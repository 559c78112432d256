import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** The repository root, from this file's place in test/worker/support/. */
export const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url));

/** Where the bundle claims to live: stack traces then name files under relay/worker/. */
export const bundlePath = `${repositoryRoot}relay/worker/index.js`;

let bundled: Promise<string> | undefined;

/**
 * Bundles relay/worker/index.ts the way `wrangler deploy` does (ES module, workerd export
 * conditions, only `cloudflare:*` left to the runtime), once per process. No `node:*` module is
 * external: the Worker runs without nodejs_compat, so an accidental Node import fails here.
 */
export function bundleWorker(): Promise<string> {
  bundled ??= build({
    entryPoints: [`${repositoryRoot}relay/worker/index.ts`],
    bundle: true,
    write: false,
    format: "esm",
    platform: "neutral",
    target: "es2024",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    external: ["cloudflare:*"],
    sourcemap: "inline",
    logLevel: "silent",
    outfile: bundlePath,
  }).then((result) => {
    const output = result.outputFiles[0];
    if (output === undefined)
      throw new Error("esbuild produced no output for relay/worker/index.ts");
    return output.text;
  });
  return bundled;
}
