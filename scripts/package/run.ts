import { spawnSync } from "node:child_process";

/** Runs a command to completion, failing with its output when it does not exit 0. */
export function run(command: string, args: readonly string[], cwd?: string): string {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", maxBuffer: 64 << 20 });
  if (result.error !== undefined) throw new Error(`${command}: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} exited with ${result.status ?? result.signal}:\n${result.stderr}${result.stdout}`,
    );
  }
  return result.stdout;
}
