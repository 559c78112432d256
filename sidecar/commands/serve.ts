/**
 * `siderolink-sidecar serve`: the server role, on the management host. Holds the network's
 * server WireGuard key (kept in the state dir), asks the relay for the server address
 * (prefix::1/64) unless --address gives it, and hands the interface and the uplink to the
 * server link until SIGINT/SIGTERM.
 */
import { readFileSync } from "node:fs";
import { parseInterfaceAddress } from "../../shared/net/ip.ts";
import { formatKey, publicKey } from "../../shared/siderolink/keys.ts";
import {
  DAEMON_OPTION_SPECS,
  daemonCommand,
  firstContact,
  preflight,
  readDaemonSettings,
  runUntilShutdown,
} from "../daemon.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { retryWithBackoff, watchShutdown } from "../lifecycle.ts";
import type { Logger } from "../log.ts";
import {
  choiceOption,
  integerOption,
  type ParsedOptions,
  parseOptions,
  relayUrlOption,
  requiredOption,
} from "../options.ts";
import { createServerLink } from "../server-link.ts";
import {
  DEFAULT_EVENT_SINK_PORT,
  DEFAULT_LOG_RECEIVER_PORT,
  type OverlayServicesSettings,
} from "../services/overlay-services.ts";
import { DEFAULT_RECORDS_KEEP, DEFAULT_RECORDS_MAX_BYTES } from "../services/records.ts";
import { DEFAULT_STATE_DIRECTORY, ensureStateDirectory, loadOrCreateServerKey } from "../state.ts";
import { DEFAULT_RUN_DIRECTORY } from "../status.ts";
import { fetchServerAddress } from "../uplink/server-address.ts";
import type { Command } from "./command.ts";

const MIB = 1024 * 1024;

const help = `Usage: siderolink-sidecar serve --relay URL --network NAME --uplink-secret-file FILE [OPTIONS]

Terminates a SideroLink network on this (management) host: keeps the server's WireGuard key,
brings up the interface with the network's server address (prefix::1/64), and holds the
uplink to the relay, adding and removing node peers as the relay reports them. Runs until
SIGINT or SIGTERM, then removes the interface, its routes and its sockets.

Options (environment variable in brackets):
  --relay URL               the relay's base URL, http(s)://host:port           [SIDEROLINK_RELAY]
  --network NAME            the relay network to serve                        [SIDEROLINK_NETWORK]
  --uplink-secret-file FILE the network's uplink secret, from FILE (printed once by siderolink-relay
                            network create NAME, or network uplink-secret NAME)
                                                                  [SIDEROLINK_UPLINK_SECRET_FILE]
  --uplink-secret SECRET    the uplink secret itself; visible to other users in ps
                                                                       [SIDEROLINK_UPLINK_SECRET]
  --admin-secret-file FILE  the network's admin secret, optional: with it, records carry node
                            UUIDs; for a network created before uplink secrets, it opens the
                            uplink until the operator mints one       [SIDEROLINK_ADMIN_SECRET_FILE]
  --admin-secret SECRET     the admin secret itself; visible in ps         [SIDEROLINK_ADMIN_SECRET]
  --address CIDR            the server address to use (default: asked from the relay)
                                                                        [SIDEROLINK_ADDRESS]
  --iface NAME              interface to create (default siderolink)            [SIDEROLINK_IFACE]
  --state DIR               keeps the server key (default ${DEFAULT_STATE_DIRECTORY})
                                                                           [SIDEROLINK_STATE_DIR]
  --run-dir DIR             where the status socket goes (default ${DEFAULT_RUN_DIRECTORY})
                                                                             [SIDEROLINK_RUN_DIR]
  --wireguard BACKEND       auto, userspace or kernel (auto: kernel when the host has the module)
                                                                         [SIDEROLINK_WIREGUARD]
  --wireguard-go CMD        make the kernel backend's interface by running CMD IFACE (e.g.
                            wireguard-go)                   [WG_QUICK_USERSPACE_IMPLEMENTATION]
  --ca-file FILE            trust this CA (PEM) for the relay's TLS          [SIDEROLINK_CA_FILE]
  --insecure                do not verify the relay's TLS certificate (warns at every start)
  --metrics-port PORT       serve Prometheus metrics on 127.0.0.1:PORT (default: off)
                                                                      [SIDEROLINK_METRICS_PORT]
  --transport KIND          auto (default, as for join), websocket or http: the uplink's
                            carrier. http is the HTTP-only tunnel (gRPC-web over HTTP/1.1
                            requests), for a host whose proxies drop WebSockets. auto starts on
                            websocket, falls back to http when that fails, and moves back when
                            it works again; status --json says which and why
                                                                         [SIDEROLINK_TRANSPORT]
  --proxy URL               reach the relay through this HTTP proxy (CONNECT; user:password@ in
                            the URL for Basic auth); default: HTTPS_PROXY or HTTP_PROXY by the
                            URL's scheme, except hosts in NO_PROXY               [SIDEROLINK_PROXY]
  --connect-timeout SEC     give up (exit ${ExitCode.RelayUnreachable}) when the relay stays unreachable this long at
                            start; 0 retries forever (default)    [SIDEROLINK_CONNECT_TIMEOUT]

Services for the nodes, on the server address only (on with --records-dir or --records-stdout):
  --records-dir DIR         write what nodes send to DIR/events.jsonl and DIR/logs.jsonl, one
                            JSON object per line              [SIDEROLINK_RECORDS_DIR]
  --records-stdout          also (or only) write each record to standard output
                                                                   [SIDEROLINK_RECORDS_STDOUT]
  --event-sink-port PORT    Talos events sink, gRPC (talos.events.sink=[SERVER]:PORT);
                            default ${DEFAULT_EVENT_SINK_PORT}, 0 off        [SIDEROLINK_EVENT_SINK_PORT]
  --log-receiver-port PORT  kernel logs, JSON lines over TCP
                            (talos.logging.kernel=tcp://[SERVER]:PORT); default ${DEFAULT_LOG_RECEIVER_PORT}, 0 off
                                                                [SIDEROLINK_LOG_RECEIVER_PORT]
  --records-max-mib N       rotate a records file at N MIB, keeping ${DEFAULT_RECORDS_KEEP} old ones (default ${DEFAULT_RECORDS_MAX_BYTES / MIB})
                                                                   [SIDEROLINK_RECORDS_MAX_MIB]
  -h, --help                show this text

Exit status: 0 after SIGINT/SIGTERM; ${ExitCode.Usage} bad option; ${ExitCode.NoNetAdmin} no CAP_NET_ADMIN; ${ExitCode.NoTun} no /dev/net/tun;
${ExitCode.BadUrl} bad relay URL; ${ExitCode.BadCredentials} secret or server key refused, or no such network; ${ExitCode.RelayUnreachable} relay
unreachable for --connect-timeout; ${ExitCode.NoAddon} packet I/O addon missing; ${ExitCode.Failure} anything else. Logs are JSON lines on standard error.
`;

const OPTION_SPECS = [
  ...DAEMON_OPTION_SPECS,
  { name: "relay", value: true, env: "SIDEROLINK_RELAY" },
  { name: "network", value: true, env: "SIDEROLINK_NETWORK" },
  { name: "admin-secret", value: true, env: "SIDEROLINK_ADMIN_SECRET" },
  { name: "admin-secret-file", value: true, env: "SIDEROLINK_ADMIN_SECRET_FILE" },
  { name: "uplink-secret", value: true, env: "SIDEROLINK_UPLINK_SECRET" },
  { name: "uplink-secret-file", value: true, env: "SIDEROLINK_UPLINK_SECRET_FILE" },
  { name: "address", value: true, env: "SIDEROLINK_ADDRESS" },
  { name: "records-dir", value: true, env: "SIDEROLINK_RECORDS_DIR" },
  { name: "records-stdout", value: false, env: "SIDEROLINK_RECORDS_STDOUT" },
  { name: "event-sink-port", value: true, env: "SIDEROLINK_EVENT_SINK_PORT" },
  { name: "log-receiver-port", value: true, env: "SIDEROLINK_LOG_RECEIVER_PORT" },
  { name: "records-max-mib", value: true, env: "SIDEROLINK_RECORDS_MAX_MIB" },
  { name: "transport", value: true, env: "SIDEROLINK_TRANSPORT" },
];

/** The records services' settings, or undefined when neither records option is given. */
function readServicesSettings(options: ParsedOptions): OverlayServicesSettings | undefined {
  const recordsDir = options.get("records-dir");
  const stdout = options.flag("records-stdout");
  const eventSinkPort = integerOption(
    options,
    "event-sink-port",
    DEFAULT_EVENT_SINK_PORT,
    0,
    65535,
  );
  const logReceiverPort = integerOption(
    options,
    "log-receiver-port",
    DEFAULT_LOG_RECEIVER_PORT,
    0,
    65535,
  );
  const maxMib = integerOption(
    options,
    "records-max-mib",
    DEFAULT_RECORDS_MAX_BYTES / MIB,
    1,
    1024 * 1024,
  );
  if (recordsDir === undefined && !stdout) {
    for (const name of ["event-sink-port", "log-receiver-port", "records-max-mib"]) {
      if (options.get(name) !== undefined)
        throw new SidecarError(
          ExitCode.Usage,
          `--${name} needs --records-dir DIR or --records-stdout: where should the records go?`,
        );
    }
    return undefined;
  }
  if (eventSinkPort === 0 && logReceiverPort === 0) {
    throw new SidecarError(
      ExitCode.Usage,
      "--event-sink-port 0 and --log-receiver-port 0 leave nothing to record; drop --records-dir/--records-stdout or give a port",
    );
  }
  if (eventSinkPort === logReceiverPort) {
    throw new SidecarError(
      ExitCode.Usage,
      `--event-sink-port and --log-receiver-port are both ${eventSinkPort}; give them different ports`,
    );
  }
  return {
    eventSinkPort,
    logReceiverPort,
    recordsDir,
    stdout,
    maxFileBytes: maxMib * MIB,
    keepFiles: DEFAULT_RECORDS_KEEP,
  };
}

export const serveCommand: Command = daemonCommand(
  "serve",
  "terminate a SideroLink network on the management host (server role)",
  help,
  serve,
);

/** A secret given by `--NAME-file` (read from the file) or `--NAME`; undefined when neither. */
function secretOption(options: ParsedOptions, name: string): string | undefined {
  const file = options.get(`${name}-file`);
  if (file === undefined) return options.get(name) || undefined;
  try {
    return readFileSync(file, "utf8").trim();
  } catch (cause) {
    throw new SidecarError(ExitCode.Usage, `--${name}-file ${file}: ${(cause as Error).message}`);
  }
}

async function serve(args: string[], log: Logger): Promise<number> {
  const options = parseOptions(args, OPTION_SPECS);
  if (options.positional.length > 0) {
    throw new SidecarError(
      ExitCode.Usage,
      `unexpected argument ${JSON.stringify(options.positional[0])}; see --help`,
    );
  }
  const relay = relayUrlOption(requiredOption(options, "relay"));
  const relayUrl = relay.origin;
  const network = requiredOption(options, "network");
  const adminSecret = secretOption(options, "admin-secret");
  const ownUplinkSecret = secretOption(options, "uplink-secret");
  const uplinkSecret = ownUplinkSecret ?? adminSecret;
  if (uplinkSecret === undefined) {
    throw new SidecarError(
      ExitCode.Usage,
      "--uplink-secret-file is required (the network's uplink secret, shown once by siderolink-relay network create, or a new one from network uplink-secret); see --help",
    );
  }
  const daemon = readDaemonSettings(options);
  const services = readServicesSettings(options);
  const addressOverride = options.get("address");
  if (addressOverride !== undefined) {
    try {
      parseInterfaceAddress(addressOverride, "--address");
    } catch (error) {
      throw new SidecarError(ExitCode.Usage, (error as Error).message);
    }
  }

  // The same default as join's, so both ends of a network choose alike.
  const transport = choiceOption(options, "transport", ["auto", "websocket", "http"], "auto");
  const { backendKind, tls, proxy } = await preflight(daemon, options, log);
  ensureStateDirectory(daemon.stateDirectory);
  const serverKey = loadOrCreateServerKey(daemon.stateDirectory);
  const serverPublicKey = publicKey(serverKey);
  log.info("starting", {
    relay: relayUrl,
    network,
    iface: daemon.iface,
    backend: backendKind,
    publicKey: formatKey(serverPublicKey),
  });
  if (ownUplinkSecret === undefined) {
    log.warn(
      "no uplink secret given: the admin secret opens the uplink only for a network created before uplink secrets; mint one (siderolink-relay network uplink-secret NETWORK) and pass --uplink-secret-file",
      { network },
    );
  }

  const shutdown = watchShutdown();
  const address = await firstContact(
    shutdown,
    async () =>
      addressOverride ??
      retryWithBackoff({
        what: `reading network ${network} from ${relayUrl}`,
        attempt: () => fetchServerAddress(relayUrl, network, uplinkSecret, tls, proxy),
        retryable: (error) => !(error instanceof SidecarError),
        log,
        signal: shutdown.signal,
        timeoutMs: daemon.connectTimeoutMs,
      }),
  );
  if (address === undefined) return 0;

  const link = createServerLink({
    relayUrl,
    network,
    uplinkSecret,
    adminSecret,
    address,
    iface: daemon.iface,
    backendKind,
    wireguardGo: daemon.wireguardGo,
    serverKey,
    serverPublicKey,
    tls,
    proxy,
    transport,
    log,
    shutdown,
    services,
  });
  return runUntilShutdown(link, daemon, shutdown, log);
}
