/**
 * Runs `siderolink-sidecar` as a separate process (optionally inside a namespace or behind a
 * wrapper such as setpriv) and collects its exit status and output, whatever the status.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const nodeBinary = fileURLToPath(
  new URL("../../../node_modules/.bin/node", import.meta.url),
);
export const cliPath = fileURLToPath(new URL("../../../sidecar/cli.ts", import.meta.url));

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly elapsedMs: number;
}

export interface CliOptions {
  /** Runs inside this network namespace. */
  readonly netns?: string;
  /** Command and arguments put before node (e.g. ["setpriv", "--reuid=65534", ...]). */
  readonly wrap?: readonly string[];
  readonly env?: Record<string, string>;
  /** Kills the process (SIGKILL) after this long; default 30 s. */
  readonly timeoutMs?: number;
}

export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const argv = [...(options.wrap ?? []), nodeBinary, cliPath, ...args];
  const full = options.netns ? ["ip", "netns", "exec", options.netns, ...argv] : argv;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(full[0], full.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...options.env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
}
