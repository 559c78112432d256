/**
 * `npm run package [-- ARCH...]`: the release artifacts in dist/, for each ARCH (x64, arm64;
 * default x64):
 *   siderolink-sidecar-VERSION-linux-ARCH.tar.gz  single executable, tun.node, unit, example
 *   siderolink-relay-VERSION-linux-ARCH.tar.gz    single executable of the Node relay
 *   siderolink-sidecar_VERSION_DEBARCH.deb        the sidecar for dpkg
 * and once siderolink-edge-VERSION.tgz, the npm package with the addon of every ARCH.
 * The executables embed Node: the hosts that run them need neither Node nor a compiler.
 */
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { VERSION } from "../shared/version.ts";
import { sourceDateEpoch, tarGz } from "./package/archive.ts";
import { bundleForExecutable, PROGRAMS } from "./package/bundle.ts";
import { buildDeb } from "./package/deb.ts";
import { buildNpmPackage } from "./package/npm-package.ts";
import { run } from "./package/run.ts";
import { buildExecutable } from "./package/sea.ts";
import { Targets } from "./package/targets.ts";

const REPOSITORY = join(import.meta.dirname, "..");
const DIST = join(REPOSITORY, "dist");
const WORK = join(DIST, ".work");
const CACHE = join(DIST, ".cache");
const UNIT = join(REPOSITORY, "sidecar", "systemd", "siderolink-sidecar@.service");
const ENV_EXAMPLE = join(REPOSITORY, "sidecar", "systemd", "siderolink.env.example");

async function main(arches: string[]): Promise<void> {
  const manifest = JSON.parse(readFileSync(join(REPOSITORY, "package.json"), "utf8")) as {
    version: string;
    license: string;
  };
  if (manifest.version !== VERSION) {
    throw new Error(
      `package.json says version ${manifest.version} but shared/version.ts says ${VERSION}: make them equal`,
    );
  }
  const targets = arches.map((arch) => {
    const target = Targets[arch];
    if (target === undefined) throw new Error(`unknown ARCH ${arch}: use x64 or arm64`);
    return target;
  });
  const epoch = sourceDateEpoch(REPOSITORY);
  process.env.SOURCE_DATE_EPOCH = epoch;
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  mkdirSync(CACHE, { recursive: true });

  const mainScripts = new Map<string, string>();
  for (const program of PROGRAMS) {
    const script = join(WORK, `${program.name}.cjs`);
    await bundleForExecutable(program, script);
    mainScripts.set(program.name, script);
  }

  const artifacts: string[] = [];
  const addons = new Map<string, string>();
  for (const target of targets) {
    const nodeBinary = target.nodeBinary(CACHE);
    const addon = join(WORK, target.arch, "tun.node");
    mkdirSync(join(WORK, target.arch), { recursive: true });
    copyFileSync(target.addon(CACHE), addon);
    run(target.strip, ["--strip-unneeded", addon]);
    addons.set(target.arch, addon);

    const executables = new Map<string, string>();
    for (const program of PROGRAMS) {
      const folder = join(WORK, target.arch, `${program.name}-${VERSION}-linux-${target.arch}`);
      mkdirSync(folder, { recursive: true });
      const executable = join(folder, program.name);
      buildExecutable({
        nodeBinary,
        strip: target.strip,
        mainScript: mainScripts.get(program.name)!,
        workDirectory: join(WORK, target.arch),
        output: executable,
      });
      executables.set(program.name, executable);
      if (program.name === "siderolink-sidecar") {
        copyFileSync(addon, join(folder, "tun.node"));
        mkdirSync(join(folder, "systemd"));
        copyFileSync(UNIT, join(folder, "systemd", "siderolink-sidecar@.service"));
        copyFileSync(ENV_EXAMPLE, join(folder, "siderolink.env.example"));
      }
      const archive = join(DIST, `${program.name}-${VERSION}-linux-${target.arch}.tar.gz`);
      run("find", [folder, "-exec", "touch", "-h", "-d", `@${epoch}`, "{}", "+"]);
      tarGz(folder, archive, epoch);
      artifacts.push(archive);
    }

    const deb = join(DIST, `siderolink-sidecar_${VERSION}_${target.debianArch}.deb`);
    buildDeb({
      version: VERSION,
      debianArch: target.debianArch,
      executable: executables.get("siderolink-sidecar")!,
      addon,
      unit: UNIT,
      envExample: ENV_EXAMPLE,
      root: join(WORK, target.arch, "deb"),
      output: deb,
      epoch,
    });
    artifacts.push(deb);
  }

  artifacts.push(
    await buildNpmPackage({
      version: VERSION,
      license: manifest.license,
      addons,
      readme: join(REPOSITORY, "README.md"),
      root: join(WORK, "npm"),
      outputDirectory: DIST,
    }),
  );
  rmSync(WORK, { recursive: true, force: true });
  for (const artifact of artifacts) {
    console.log(`${artifact.slice(REPOSITORY.length + 1)}  ${statSync(artifact).size} bytes`);
  }
}

const arches = process.argv.slice(2);
await main(arches.length === 0 ? ["x64"] : arches);
