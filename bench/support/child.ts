/** Helper processes of the benchmarks (relay hosts, load generators) that talk in JSON lines. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nodeBinary } from "../../test/sidecar/support/cli.ts";

export interface JsonChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The next JSON line the process prints, or a rejection after `timeoutMs`. */
  nextJson<T>(timeoutMs: number): Promise<T>;
  /** SIGTERM, then SIGKILL after 5 s. */
  stop(): Promise<void>;
}

/**
 * Starts `node [nodeFlags] script args` with its open-files limit raised to the hard limit (many
 * sockets), collecting stdout lines; stderr passes through prefixed with the script's name.
 */
export function spawnNodeScript(
  script: string,
  args: readonly string[],
  options: { nodeFlags?: readonly string[] } = {},
): JsonChild {
  const argv = [nodeBinary, ...(options.nodeFlags ?? []), script, ...args];
  const child = spawn("sh", ["-c", `ulimit -n "$(ulimit -Hn)" && exec "$@"`, "sh", ...argv], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const name = script.slice(script.lastIndexOf("/") + 1);
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  let partial = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts.filter((line) => line.startsWith("{")));
    wake?.();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    process.stderr.write(chunk.replace(/^(?=.)/gm, `  [${name}] `));
  });
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  return {
    child,
    pid: child.pid ?? -1,
    async nextJson<T>(timeoutMs: number): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      while (lines.length === 0) {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}`);
        if (Date.now() > deadline)
          throw new Error(`${name} printed no JSON line in ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
      return JSON.parse(lines.shift()!) as T;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A temporary directory, removed by the returned function. */
export function temporaryDirectory(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export const nodeRelayScript = fileURLToPath(new URL("./node-relay.ts", import.meta.url));

export interface NodeRelayInfo {
  readonly url: string;
  readonly network: string;
  readonly adminSecret: string;
  readonly uplinkSecret: string;
  readonly joinToken: string;
  readonly virtualAddresses: readonly string[];
}
