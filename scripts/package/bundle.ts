/**
 * The CLIs as single JavaScript files (esbuild): CommonJS for a single executable, whose main
 * script Node runs as CommonJS, and ESM for the npm package.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const REPOSITORY = join(import.meta.dirname, "..", "..");

/** The programs a release ships: their entry point and the name of their executable. */
export const PROGRAMS = [
  { name: "siderolink-sidecar", entry: "sidecar/cli.ts" },
  { name: "siderolink-relay", entry: "relay/cli.ts" },
] as const;
export type Program = (typeof PROGRAMS)[number];

const HASHBANG = "#!/usr/bin/env node\n";

async function bundle(program: Program, format: "cjs" | "esm", outfile: string): Promise<void> {
  await build({
    entryPoints: [join(REPOSITORY, program.entry)],
    outfile,
    bundle: true,
    platform: "node",
    target: "node22",
    format,
    // ws loads these optional speed-ups when present; the bundles go without them.
    external: ["bufferutil", "utf-8-validate"],
    // A CommonJS bundle has no import.meta: give it the module's own URL.
    define: format === "cjs" ? { "import.meta.url": "__import_meta_url" } : {},
    banner: {
      js:
        format === "cjs"
          ? 'const __import_meta_url = require("node:url").pathToFileURL(__filename).href;'
          : // Bundled CommonJS dependencies call require(), which ESM does not define.
            'import { createRequire as __createRequire } from "node:module";\nconst require = __createRequire(import.meta.url);',
    },
    legalComments: "eof",
    logLevel: "warning",
  });
  // The entry's hashbang: a single executable's main script must not have one (it is wrapped
  // in a function), the npm package's bin must, before the banner.
  const code = readFileSync(outfile, "utf8").replace(HASHBANG, "");
  writeFileSync(outfile, format === "esm" ? HASHBANG + code : code, {
    mode: format === "esm" ? 0o755 : 0o644,
  });
}

/** The main script of a single executable. */
export function bundleForExecutable(program: Program, outfile: string): Promise<void> {
  return bundle(program, "cjs", outfile);
}

/** The bin of the npm package. */
export function bundleForPackage(program: Program, outfile: string): Promise<void> {
  return bundle(program, "esm", outfile);
}
