/**
 * The npm package `siderolink-edge`, installed from its release tarball
 * (npm install -g ./siderolink-edge-VERSION.tgz): both CLIs bundled into lib/ (no dependencies
 * to install, no TypeScript to strip), and the addon prebuilt for each target under
 * lib/prebuilds/linux-ARCH/, where sidecar/native/addon.ts looks for it. No install script:
 * installing needs no compiler.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bundleForPackage, PROGRAMS } from "./bundle.ts";
import { run } from "./run.ts";

/**
 * The oldest Node the bundles run on: node:sqlite without a flag (22.13) for the relay, and
 * @kubernetes/client-node's own minimum (22.19: its HTTP client needs zlib's zstd) for the
 * sidecar; the bundles need no type stripping. test/packaging checks the bound with that very
 * release.
 */
export const PACKAGE_NODE_ENGINE = ">=22.19";

export async function buildNpmPackage(options: {
  readonly version: string;
  readonly license: string;
  readonly addons: ReadonlyMap<string, string>;
  readonly readme: string;
  readonly root: string;
  readonly outputDirectory: string;
}): Promise<string> {
  const { root } = options;
  const lib = join(root, "lib");
  mkdirSync(lib, { recursive: true });
  for (const program of PROGRAMS) await bundleForPackage(program, join(lib, `${program.name}.mjs`));
  for (const [arch, addon] of options.addons) {
    mkdirSync(join(lib, "prebuilds", `linux-${arch}`), { recursive: true });
    copyFileSync(addon, join(lib, "prebuilds", `linux-${arch}`, "tun.node"));
  }
  copyFileSync(options.readme, join(root, "README.md"));
  const manifest = {
    name: "siderolink-edge",
    version: options.version,
    description:
      "SideroLink sidecar and self-hosted relay for machines whose networks block UDP (bundled, no dependencies).",
    type: "module",
    license: options.license,
    bin: Object.fromEntries(PROGRAMS.map((program) => [program.name, `lib/${program.name}.mjs`])),
    files: ["lib/", "README.md"],
    engines: { node: PACKAGE_NODE_ENGINE },
  };
  writeFileSync(join(root, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  run("npm", ["pack", "--pack-destination", options.outputDirectory], root);
  return join(options.outputDirectory, `siderolink-edge-${options.version}.tgz`);
}
