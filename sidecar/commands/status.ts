/**
 * `siderolink-sidecar status [--json]`: asks the sidecar running for an interface how its link
 * is, through that interface's status socket. Exits 0 when the link is up, 1 when it is down or
 * no sidecar answers.
 */
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { checkInterfaceName, parseOptions } from "../options.ts";
import {
  DefaultRunDirectory,
  readStatus,
  type StatusSnapshot,
  statusSocketPath,
} from "../status.ts";
import type { Command } from "./command.ts";

const help = `Usage: siderolink-sidecar status [--iface NAME] [--run-dir DIR] [--json]

Shows the state of the sidecar running for interface NAME (default siderolink): role,
relay, transport state, addresses, and per peer the endpoint, last handshake age and bytes,
and drop counters.

Options:
  --iface NAME    the interface the sidecar runs (default siderolink)    [SIDEROLINK_IFACE]
  --run-dir DIR   where its status socket is (default ${DefaultRunDirectory})  [SIDEROLINK_RUN_DIR]
  --json          print the whole report as one JSON object
  -h, --help      show this text

Exit status: 0 when the link is up; 1 when it is down or no sidecar runs for NAME.
`;

export const statusCommand: Command = {
  summary: "show the link state of a running sidecar (exit 1 when down)",
  help,
  async run(args) {
    let options: ReturnType<typeof parseOptions>;
    try {
      options = parseOptions(args, [
        { name: "iface", value: true, env: "SIDEROLINK_IFACE" },
        { name: "run-dir", value: true, env: "SIDEROLINK_RUN_DIR" },
        { name: "json", value: false },
      ]);
      if (options.positional.length > 0) {
        throw new SidecarError(
          ExitCode.Usage,
          `unexpected argument ${JSON.stringify(options.positional[0])}`,
        );
      }
    } catch (error) {
      if (!(error instanceof SidecarError)) throw error;
      process.stderr.write(`siderolink-sidecar status: ${error.message}\n`);
      return error.exitCode;
    }
    const iface = checkInterfaceName(options.get("iface") ?? "siderolink");
    const path = statusSocketPath(options.get("run-dir") ?? DefaultRunDirectory, iface);
    let snapshot: StatusSnapshot;
    try {
      snapshot = await readStatus(path);
    } catch (error) {
      const message = (error as Error).message;
      if (options.flag("json"))
        process.stdout.write(`${JSON.stringify({ iface, up: false, error: message })}\n`);
      else process.stderr.write(`siderolink-sidecar status: ${message}\n`);
      return ExitCode.Failure;
    }
    process.stdout.write(
      options.flag("json") ? `${JSON.stringify(snapshot, null, 2)}\n` : formatStatus(snapshot),
    );
    return snapshot.up ? ExitCode.Ok : ExitCode.Failure;
  },
};

export function formatStatus(s: StatusSnapshot): string {
  const t = s.transport;
  const lines = [
    `${s.iface}: ${s.role} (${s.backend} WireGuard), link ${s.up ? "UP" : "DOWN"}`,
    `  relay:     ${s.relay}`,
    `  transport: ${t.kind} ${t.state}${t.lastError ? ` (last error: ${t.lastError})` : ""}, ${t.connects} connects`,
    ...(t.reason ? [`             ${t.choice}: ${t.reason}`] : []),
    `             rx ${t.rxDatagrams} datagrams / ${t.rxBytes} bytes, tx ${t.txDatagrams} datagrams / ${t.txBytes} bytes`,
    `  address:   ${s.addresses.local ?? "-"}   server: ${s.addresses.server ?? "-"}${s.addresses.virtual ? `   virtual: ${s.addresses.virtual}` : ""}`,
    `  peers:     ${s.peers.length}`,
  ];
  for (const peer of s.peers) {
    const age =
      peer.lastHandshakeAgeSeconds === null ? "never" : `${peer.lastHandshakeAgeSeconds} s ago`;
    lines.push(
      `    ${peer.publicKey}${peer.address ? ` ${peer.address}` : ""}`,
      `      endpoint ${peer.endpoint ?? "-"}, handshake ${age}, rx ${peer.rxBytes} B, tx ${peer.txBytes} B`,
    );
  }
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  lines.push(
    `  drops:     ${drops.length === 0 ? "none" : drops.map(([k, n]) => `${k}=${n}`).join(" ")}`,
  );
  return `${lines.join("\n")}\n`;
}
