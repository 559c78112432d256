/**
 * The Debian package of the sidecar, built with dpkg-deb: the single executable and its addon
 * under /usr/lib/siderolink-sidecar/, /usr/bin/siderolink-sidecar linked to it (the path the
 * unit starts), the template unit, and the example settings.
 */
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./run.ts";

const DESCRIPTION = `SideroLink sidecar: Talos's management overlay where UDP is blocked
 Puts this machine on a SideroLink network, through a relay when UDP is blocked:
 the node role (join), the management server's role (serve), and a userspace
 WireGuard interface configured with wg (like wireguard-go). A single executable,
 no Node needed. Start it with systemctl enable --now siderolink-sidecar@IFACE
 after writing /etc/siderolink-sidecar/IFACE.env.`;

/** The libraries the official Node binary links (GLIBC_2.28, GLIBCXX_3.4.21 at most). */
const DEPENDS = "libc6 (>= 2.28), libstdc++6 (>= 5.2), libgcc-s1, iproute2";

const POSTINST = `#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
`;

export function buildDeb(options: {
  readonly version: string;
  readonly debianArch: string;
  readonly executable: string;
  readonly addon: string;
  readonly unit: string;
  readonly envExample: string;
  readonly root: string;
  readonly output: string;
  readonly epoch: string;
}): void {
  const { root } = options;
  const lib = join(root, "usr", "lib", "siderolink-sidecar");
  const units = join(root, "usr", "lib", "systemd", "system");
  const examples = join(root, "usr", "share", "doc", "siderolink-sidecar", "examples");
  const control = join(root, "DEBIAN");
  for (const directory of [lib, units, examples, control, join(root, "usr", "bin")]) {
    mkdirSync(directory, { recursive: true, mode: 0o755 });
  }
  mkdirSync(join(root, "etc", "siderolink-sidecar"), { recursive: true, mode: 0o700 });
  chmodSync(join(root, "etc", "siderolink-sidecar"), 0o700);
  copyFileSync(options.executable, join(lib, "siderolink-sidecar"));
  chmodSync(join(lib, "siderolink-sidecar"), 0o755);
  copyFileSync(options.addon, join(lib, "tun.node"));
  chmodSync(join(lib, "tun.node"), 0o644);
  symlinkSync(
    "../lib/siderolink-sidecar/siderolink-sidecar",
    join(root, "usr", "bin", "siderolink-sidecar"),
  );
  copyFileSync(options.unit, join(units, "siderolink-sidecar@.service"));
  copyFileSync(options.envExample, join(examples, "siderolink.env.example"));
  const installedKiB = Math.ceil(
    Number(run("du", ["-sk", "--exclude=DEBIAN", root]).split("\t")[0]),
  );
  writeFileSync(
    join(control, "control"),
    [
      "Package: siderolink-sidecar",
      `Version: ${options.version}`,
      `Architecture: ${options.debianArch}`,
      "Maintainer: siderolink-edge maintainers <siderolink-edge@users.noreply.github.com>",
      `Installed-Size: ${installedKiB}`,
      `Depends: ${DEPENDS}`,
      "Recommends: wireguard-tools",
      "Section: net",
      "Priority: optional",
      `Description: ${DESCRIPTION}`,
      "",
    ].join("\n"),
  );
  writeFileSync(join(control, "postinst"), POSTINST, { mode: 0o755 });
  run("find", [root, "-exec", "touch", "-h", "-d", `@${options.epoch}`, "{}", "+"]);
  run("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", root, options.output]);
}
