import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

/**
 * Watches one interface through `ip -o monitor link`, which prints a line per rtnetlink link
 * message: `7: wg0: <POINTOPOINT,UP,LOWER_UP> mtu 1420 qdisc ...` on a change, and the same
 * prefixed with `Deleted ` when the link goes away.
 */

export type LinkEvent = { kind: "changed"; mtu: number; up: boolean } | { kind: "deleted" };

export interface LinkWatch {
  /**
   * Resolves once the `ip` process has started; it subscribes to rtnetlink a moment later, so
   * a change made in the same instant may go unseen.
   */
  readonly ready: Promise<void>;
  close(): void;
}

const linkLine = /^(Deleted )?\d+: ([^:@]+)(?:@[^:]+)?: <([^>]*)>.* mtu (\d+)/;

export function watchLink(iface: string, onEvent: (event: LinkEvent) => void): LinkWatch {
  const child = spawn("ip", ["-o", "monitor", "link"], { stdio: ["ignore", "pipe", "inherit"] });
  const ready = new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "ENOENT"
          ? new Error("the `ip` command is missing: install the Debian package iproute2")
          : error,
      );
    });
  });
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (line) => {
    const match = linkLine.exec(line);
    if (match === null || match[2] !== iface) return;
    if (match[1] !== undefined) onEvent({ kind: "deleted" });
    else
      onEvent({ kind: "changed", mtu: Number(match[4]), up: match[3].split(",").includes("UP") });
  });
  return {
    ready,
    close() {
      lines.close();
      if (child.exitCode === null) child.kill();
    },
  };
}
