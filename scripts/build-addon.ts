/**
 * `npm ci`'s install step: builds the sidecar's packet I/O addon (sidecar/native/) with
 * node-gyp against the headers of the Node that the project installs (the `node` devDependency),
 * so that a fresh machine needs gcc and make but no Node headers of its own.
 *
 * Only the sidecar needs the addon, and only on Linux. Elsewhere (macOS, a CI image that only
 * deploys the Worker) it is skipped, and a failed build is reported without failing the install,
 * so that `wrangler deploy` still works.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const NATIVE_DIRECTORY = join(import.meta.dirname, "..", "sidecar", "native");

/** The directory holding include/node of the Node package installed beside this project. */
export function nodeHeadersDirectory(platform = process.platform, arch = process.arch): string {
  const nodePackage = createRequire(import.meta.url).resolve("node/package.json");
  const binaries = createRequire(nodePackage).resolve(`node-${platform}-${arch}/package.json`);
  const prefix = dirname(binaries);
  if (!existsSync(join(prefix, "include", "node", "node_api.h"))) {
    throw new Error(`${prefix} has no include/node/node_api.h: reinstall with npm ci`);
  }
  return prefix;
}

function main(): number {
  if (process.platform !== "linux") {
    console.log(
      `build-addon: skipped on ${process.platform}: the sidecar's packet I/O addon is Linux-only (the Worker relay needs none)`,
    );
    return 0;
  }
  let nodedir: string;
  try {
    nodedir = nodeHeadersDirectory();
  } catch (error) {
    console.warn(`build-addon: not built: ${(error as Error).message}`);
    return 0;
  }
  const nodeGyp = createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
  const result = spawnSync(
    process.execPath,
    [nodeGyp, "rebuild", "-C", NATIVE_DIRECTORY, `--nodedir=${nodedir}`],
    // node-gyp lets npm's configuration (a user's `nodedir` in .npmrc) override its flags.
    { stdio: "inherit", env: { ...process.env, npm_config_nodedir: nodedir } },
  );
  if (result.status !== 0) {
    console.warn(
      "build-addon: the sidecar's packet I/O addon did not build (it needs python3, make and a C compiler); " +
        "the relay and the Worker work without it; to run the sidecar from this checkout, install those and run `npm run build:addon`",
    );
  }
  return 0;
}

if (import.meta.main) process.exitCode = main();
