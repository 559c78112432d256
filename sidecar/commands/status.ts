/**
 * `siderolink-sidecar status [--json]`: asks the sidecar running for an interface how its link
 * is, through that interface's status socket. Exits 0 when the link is up, 1 when it is down or
 * no sidecar answers.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { VERSION } from "../../shared/version.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { checkInterfaceName, parseOptions } from "../options.ts";
import {
  DEFAULT_RUN_DIRECTORY,
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
  --run-dir DIR   where its status socket is (default ${DEFAULT_RUN_DIRECTORY}, or
                  ${DEFAULT_RUN_DIRECTORY}/NAME as the unit siderolink-sidecar@NAME sets it)  [SIDEROLINK_RUN_DIR]
  --json          print the whole report as one JSON object, with this program's "version"
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
    const runDirectory = options.get("run-dir");
    const path =
      runDirectory === undefined
        ? defaultStatusSocket(iface)
        : statusSocketPath(runDirectory, iface);
    let snapshot: StatusSnapshot;
    try {
      snapshot = await readStatus(path);
    } catch (error) {
      const message = (error as Error).message;
      if (options.flag("json"))
        process.stdout.write(
          `${JSON.stringify({ iface, up: false, error: message, version: VERSION })}\n`,
        );
      else process.stderr.write(`siderolink-sidecar status: ${message}\n`);
      return ExitCode.Failure;
    }
    process.stdout.write(
      options.flag("json")
        ? `${JSON.stringify({ ...snapshot, version: VERSION }, null, 2)}\n`
        : formatStatus(snapshot),
    );
    return snapshot.up ? ExitCode.Ok : ExitCode.Failure;
  },
};

/**
 * The status socket of a sidecar started by hand (all interfaces in one run directory) or by
 * the unit siderolink-sidecar@IFACE (a run directory per interface).
 */
function defaultStatusSocket(iface: string): string {
  const shared = statusSocketPath(DEFAULT_RUN_DIRECTORY, iface);
  const perInterface = statusSocketPath(join(DEFAULT_RUN_DIRECTORY, iface), iface);
  return existsSync(shared) || !existsSync(perInterface) ? shared : perInterface;
}

export function formatStatus(s: StatusSnapshot): string {
  const t = s.transport;
  const lines = [
    `${s.iface}: ${s.role} (${s.backend} WireGuard), link ${s.up ? "UP" : "DOWN"}`,
    `  relay:     ${s.relay}`,
    `  transport: ${t.kind} ${t.state}${t.lastError ? ` (last error: ${t.lastError})` : ""}, ${t.connects} connects`,
    ...(t.reason ? [`             ${t.choice}: ${t.reason}`] : []),
    `             rx ${t.rxDatagrams} datagrams / ${t.rxBytes} bytes, tx ${t.txDatagrams} datagrams / ${t.txBytes} bytes`,
    `  address:   ${s.addresses.local ?? "-"}   server: ${s.addresses.server ?? "-"}${s.addresses.virtual ? `   virtual: ${s.addresses.virtual}` : ""}`,
    s.gateway
      ? `  machines:  ${s.gateway.nodes.length} (network ${s.gateway.network}, UDP ${s.gateway.wireguardListen ?? "off"})`
      : `  peers:     ${s.peers.length}`,
    ...(s.gateway?.lanTlsFailures
      ? [
          `             ${s.gateway.lanTlsFailures} LAN connections failed the TLS handshake (see the log)`,
        ]
      : []),
  ];
  for (const peer of s.peers) {
    const age =
      peer.lastHandshakeAgeSeconds === null ? "never" : `${peer.lastHandshakeAgeSeconds} s ago`;
    lines.push(
      `    ${peer.publicKey}${peer.address ? ` ${peer.address}` : ""}`,
      `      endpoint ${peer.endpoint ?? "-"}, handshake ${age}, rx ${peer.rxBytes} B, tx ${peer.txBytes} B`,
    );
    if (peer.meshAddress !== undefined) {
      const routed = peer.routedPrefixes?.length ? ` + ${peer.routedPrefixes.join(" ")}` : "";
      lines.push(`      mesh ${peer.meshAddress}${routed}, path ${peer.path ?? "-"}`);
    }
  }
  for (const node of s.gateway?.nodes ?? []) {
    lines.push(
      `    ${node.virtual} ${node.mode} from ${node.lan ?? "-"}: relay ${node.relay.transport} ${node.relay.state}, heard ${node.lastHeardSecondsAgo} s ago`,
      ...(node.relay.reason ? [`      auto: ${node.relay.reason}`] : []),
      `      from machine ${node.fromMachine.datagrams} datagrams / ${node.fromMachine.bytes} bytes, to machine ${node.toMachine.datagrams} datagrams / ${node.toMachine.bytes} bytes`,
    );
  }
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  lines.push(
    `  drops:     ${drops.length === 0 ? "none" : drops.map(([k, n]) => `${k}=${n}`).join(" ")}`,
  );
  return `${lines.join("\n")}\n`;
}
