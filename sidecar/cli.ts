#!/usr/bin/env node
import { VERSION } from "../shared/version.ts";
import type { Command } from "./commands/command.ts";
import { gatewayCommand } from "./commands/gateway.ts";
import { joinCommand } from "./commands/join.ts";
import { meshCommand } from "./commands/mesh.ts";
import { serveCommand } from "./commands/serve.ts";
import { statusCommand } from "./commands/status.ts";
import { wireguardCommand } from "./commands/wireguard.ts";

const commands: Record<string, Command> = {
  join: joinCommand,
  gateway: gatewayCommand,
  mesh: meshCommand,
  serve: serveCommand,
  status: statusCommand,
  wireguard: wireguardCommand,
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const list = Object.entries(commands)
    .map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`)
    .join("\n");
  return `Usage: siderolink-sidecar COMMAND [ARGS...]

Puts this machine on a SideroLink management network, through a relay when UDP is blocked.

Commands:
${list}

Run "siderolink-sidecar COMMAND --help" for a command's options, and
"siderolink-sidecar --version" for the version.
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    process.stdout.write(`siderolink-sidecar ${VERSION}\n`);
    return 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`siderolink-sidecar: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(command.help);
    return 0;
  }
  return command.run(args);
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    process.stderr.write(
      `siderolink-sidecar: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
