/**
 * What the long-running roles (`join`, `serve`) share: their common options, the checks made
 * before anything is touched, the start-up wait for the relay, the WireGuard backend, and the
 * run itself: status socket and metrics up, "ready", wait for SIGINT/SIGTERM or a fatal error,
 * then everything closed in reverse order.
 */
import type { BackendKind, BackendOptions, WireGuardBackend } from "./backend/backend.ts";
import { createKernelBackend } from "./backend/kernel.ts";
import { createUserspaceBackend } from "./backend/userspace.ts";
import type { Command } from "./commands/command.ts";
import { ExitCode, SidecarError } from "./exit-codes.ts";
import { RetriesExhausted, type Shutdown } from "./lifecycle.ts";
import { createLogger, type Logger } from "./log.ts";
import { type MetricsServer, serveMetrics } from "./metrics.ts";
import { describeProxy, loadProxySettings, type ProxySettings } from "./net/proxy.ts";
import {
  checkInterfaceName,
  choiceOption,
  integerOption,
  type OptionSpec,
  type ParsedOptions,
} from "./options.ts";
import { type BackendChoice, requireNetAdmin, resolveBackend } from "./preflight.ts";
import { DEFAULT_STATE_DIRECTORY } from "./state.ts";
import {
  DEFAULT_RUN_DIRECTORY,
  type StatusServer,
  type StatusSnapshot,
  serveStatus,
  statusSocketPath,
} from "./status.ts";
import { INSECURE_WARNING, loadTlsSettings, type TlsSettings } from "./tls.ts";

/** Options both roles take, with the same meaning and environment variable. */
export const DAEMON_OPTION_SPECS: readonly OptionSpec[] = [
  { name: "iface", value: true, env: "SIDEROLINK_IFACE" },
  { name: "state", value: true, env: "SIDEROLINK_STATE_DIR" },
  { name: "run-dir", value: true, env: "SIDEROLINK_RUN_DIR" },
  { name: "wireguard", value: true, env: "SIDEROLINK_WIREGUARD" },
  { name: "wireguard-go", value: true, env: "WG_QUICK_USERSPACE_IMPLEMENTATION" },
  { name: "ca-file", value: true, env: "SIDEROLINK_CA_FILE" },
  { name: "insecure", value: false, env: "SIDEROLINK_INSECURE" },
  { name: "metrics-port", value: true, env: "SIDEROLINK_METRICS_PORT" },
  { name: "connect-timeout", value: true, env: "SIDEROLINK_CONNECT_TIMEOUT" },
  { name: "proxy", value: true, env: "SIDEROLINK_PROXY" },
];

export interface DaemonSettings {
  readonly iface: string;
  readonly backendChoice: BackendChoice;
  readonly wireguardGo: string | undefined;
  readonly metricsPort: number;
  readonly connectTimeoutMs: number;
  readonly stateDirectory: string;
  readonly runDirectory: string;
}

export function readDaemonSettings(options: ParsedOptions): DaemonSettings {
  return {
    iface: checkInterfaceName(options.get("iface") ?? "siderolink"),
    backendChoice: choiceOption<BackendChoice>(
      options,
      "wireguard",
      ["auto", "userspace", "kernel"],
      "auto",
    ),
    metricsPort: integerOption(options, "metrics-port", 0, 0, 65535),
    connectTimeoutMs: integerOption(options, "connect-timeout", 0, 0, 86_400) * 1000,
    stateDirectory: options.get("state") ?? DEFAULT_STATE_DIRECTORY,
    runDirectory: options.get("run-dir") ?? DEFAULT_RUN_DIRECTORY,
    wireguardGo: options.get("wireguard-go"),
  };
}

/**
 * A role's command: logs JSON under its name, and turns a SidecarError into its exit status
 * with the message both logged and printed for the operator.
 */
export function daemonCommand(
  name: string,
  summary: string,
  help: string,
  run: (args: string[], log: Logger) => Promise<number>,
): Command {
  return {
    summary,
    help,
    async run(args) {
      const log = createLogger(name);
      try {
        return await run(args, log);
      } catch (error) {
        if (!(error instanceof SidecarError)) throw error;
        log.error(error.message, { exitCode: error.exitCode });
        process.stderr.write(`siderolink-sidecar ${name}: ${error.message}\n`);
        return error.exitCode;
      }
    },
  };
}

/** CAP_NET_ADMIN, a usable WireGuard backend and the TLS settings, checked before anything is touched. */
export async function preflight(
  settings: DaemonSettings,
  options: ParsedOptions,
  log: Logger,
): Promise<{ backendKind: BackendKind } & RelayAccess> {
  requireNetAdmin();
  const backendKind = await resolveBackend(settings.backendChoice, settings.wireguardGo);
  return { backendKind, ...loadRelayAccess(options, log) };
}

/** How every role reaches the relay: TLS trust and the forward proxy. */
export interface RelayAccess {
  readonly tls: TlsSettings;
  readonly proxy: ProxySettings;
}

/** `--ca-file`/`--insecure` and `--proxy` (or the proxy variables), each said in the log. */
export function loadRelayAccess(options: ParsedOptions, log: Logger): RelayAccess {
  const tls = loadTlsSettings(options.get("ca-file"), options.flag("insecure"));
  if (tls.insecure) log.warn(INSECURE_WARNING);
  const proxy = loadProxySettings(options.get("proxy"), process.env, tls);
  for (const [name, url] of [
    ["--proxy", proxy.explicit],
    ["HTTPS_PROXY", proxy.httpsProxy],
    ["HTTP_PROXY", proxy.httpProxy],
  ] as const) {
    if (url) log.info("using a forward proxy", { from: name, proxy: describeProxy(url) });
  }
  return { tls, proxy };
}

/**
 * The first contact with the relay, retried by `attempt` until --connect-timeout. Resolves
 * undefined when a signal ended the wait (the command then exits 0).
 */
export async function firstContact<T>(
  shutdown: Shutdown,
  attempt: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await attempt();
  } catch (error) {
    shutdown.dispose();
    if (shutdown.signal.aborted) return undefined;
    if (error instanceof RetriesExhausted) {
      throw new SidecarError(
        ExitCode.RelayUnreachable,
        `the relay stayed unreachable: ${error.message}`,
      );
    }
    throw error;
  }
}

export function createBackend(
  kind: BackendKind,
  options: BackendOptions,
  wireguardGo: string | undefined,
): Promise<WireGuardBackend> {
  return kind === "kernel"
    ? createKernelBackend({ ...options, wireguardGo })
    : createUserspaceBackend(options);
}

/** A role's running state: brought up by `start`, reported by `snapshot`, ended by `close`. */
export interface RoleRuntime {
  start(): Promise<void>;
  snapshot(): Promise<StatusSnapshot>;
  close(): Promise<void>;
}

/**
 * Starts the role, serves its status (and metrics when asked), and runs until shutdown is
 * requested; then closes metrics, status and the role, whatever failed on the way.
 */
export async function runUntilShutdown(
  role: RoleRuntime,
  settings: DaemonSettings,
  shutdown: Shutdown,
  log: Logger,
): Promise<number> {
  let status: StatusServer | undefined;
  let metrics: MetricsServer | undefined;
  const snapshot = (): Promise<StatusSnapshot> => role.snapshot();
  try {
    await role.start();
    status = await serveStatus(statusSocketPath(settings.runDirectory, settings.iface), snapshot);
    if (settings.metricsPort !== 0) {
      metrics = await serveMetrics(settings.metricsPort, snapshot);
      log.info("serving metrics", { url: `http://127.0.0.1:${metrics.port}/metrics` });
    }
    log.info("ready", { statusSocket: status.path });
    const reason = await shutdown.requested;
    log.info("shutting down", { reason });
  } finally {
    shutdown.dispose();
    await metrics?.close();
    await status?.close();
    await role.close();
    log.info("stopped: interface, routes and sockets removed", { iface: settings.iface });
  }
  return shutdown.exitCode;
}
