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
  DaemonOptionSpecs,
  daemonCommand,
  firstContact,
  preflight,
  readDaemonSettings,
  runUntilShutdown,
} from "../daemon.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { retryWithBackoff, watchShutdown } from "../lifecycle.ts";
import { type Logger, redactUrl } from "../log.ts";
import { choiceOption, parseOptions } from "../options.ts";
import { createServerLink } from "../server-link.ts";
import { DefaultStateDirectory, ensureStateDirectory, loadOrCreateServerKey } from "../state.ts";
import { DefaultRunDirectory } from "../status.ts";
import { fetchServerAddress } from "../uplink/server-address.ts";
import type { Command } from "./command.ts";

const help = `Usage: siderolink-sidecar serve --relay URL --network NAME --admin-secret SECRET [OPTIONS]

Terminates a SideroLink network on this (management) host: keeps the server's WireGuard key,
brings up the interface with the network's server address (prefix::1/64), and holds the
uplink to the relay, adding and removing node peers as the relay reports them. Runs until
SIGINT or SIGTERM, then removes the interface, its routes and its sockets.

Options (environment variable in brackets):
  --relay URL               the relay's base URL, http(s)://host:port           [SIDEROLINK_RELAY]
  --network NAME            the relay network to serve                        [SIDEROLINK_NETWORK]
  --admin-secret SECRET     the network's admin secret (siderolink-relay network show NAME)
                                                                        [SIDEROLINK_ADMIN_SECRET]
  --admin-secret-file FILE  read the admin secret from FILE instead  [SIDEROLINK_ADMIN_SECRET_FILE]
  --address CIDR            the server address to use (default: asked from the relay)
                                                                        [SIDEROLINK_ADDRESS]
  --iface NAME              interface to create (default siderolink)            [SIDEROLINK_IFACE]
  --state DIR               keeps the server key (default ${DefaultStateDirectory})
                                                                           [SIDEROLINK_STATE_DIR]
  --run-dir DIR             where the status socket goes (default ${DefaultRunDirectory})
                                                                             [SIDEROLINK_RUN_DIR]
  --wireguard BACKEND       auto, userspace or kernel (auto: kernel when the host has the module)
                                                                         [SIDEROLINK_WIREGUARD]
  --wireguard-go CMD        make the kernel backend's interface by running CMD IFACE (e.g.
                            wireguard-go)                   [WG_QUICK_USERSPACE_IMPLEMENTATION]
  --ca-file FILE            trust this CA (PEM) for the relay's TLS          [SIDEROLINK_CA_FILE]
  --insecure                do not verify the relay's TLS certificate (warns at every start)
  --metrics-port PORT       serve Prometheus metrics on 127.0.0.1:PORT (default: off)
                                                                      [SIDEROLINK_METRICS_PORT]
  --transport KIND          websocket (default) or http: the uplink's carrier; http is the
                            HTTP-only tunnel (gRPC-web over HTTP/1.1 requests), for a host
                            whose proxies drop WebSockets                 [SIDEROLINK_TRANSPORT]
  --proxy URL               reach the relay through this HTTP proxy (CONNECT; user:password@ in
                            the URL for Basic auth); default: HTTPS_PROXY or HTTP_PROXY by the
                            URL's scheme, except hosts in NO_PROXY               [SIDEROLINK_PROXY]
  --connect-timeout SEC     give up (exit ${ExitCode.RelayUnreachable}) when the relay stays unreachable this long at
                            start; 0 retries forever (default)    [SIDEROLINK_CONNECT_TIMEOUT]
  -h, --help                show this text

Exit status: 0 after SIGINT/SIGTERM; ${ExitCode.Usage} bad option; ${ExitCode.NotRoot} not root; ${ExitCode.NoTun} no /dev/net/tun;
${ExitCode.BadUrl} bad relay URL; ${ExitCode.BadCredentials} admin secret refused or no such network; ${ExitCode.RelayUnreachable} relay
unreachable for --connect-timeout; ${ExitCode.Failure} anything else. Logs are JSON lines on standard error.
`;

const OptionSpecs = [
  ...DaemonOptionSpecs,
  { name: "relay", value: true, env: "SIDEROLINK_RELAY" },
  { name: "network", value: true, env: "SIDEROLINK_NETWORK" },
  { name: "admin-secret", value: true, env: "SIDEROLINK_ADMIN_SECRET" },
  { name: "admin-secret-file", value: true, env: "SIDEROLINK_ADMIN_SECRET_FILE" },
  { name: "address", value: true, env: "SIDEROLINK_ADDRESS" },
  { name: "transport", value: true, env: "SIDEROLINK_TRANSPORT" },
];

export const serveCommand: Command = daemonCommand(
  "serve",
  "terminate a SideroLink network on the management host (server role)",
  help,
  serve,
);

function required(value: string | undefined, name: string): string {
  if (value === undefined || value === "") {
    throw new SidecarError(ExitCode.Usage, `--${name} is required; see --help`);
  }
  return value;
}

function readSecret(file: string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (cause) {
    throw new SidecarError(
      ExitCode.Usage,
      `--admin-secret-file ${file}: ${(cause as Error).message}`,
    );
  }
}

function checkRelayUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay ${JSON.stringify(redactUrl(text))} is not a URL; expected http(s)://host:port`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SidecarError(
      ExitCode.BadUrl,
      `--relay scheme ${url.protocol} is not http: or https:`,
    );
  }
  return url;
}

async function serve(args: string[], log: Logger): Promise<number> {
  const options = parseOptions(args, OptionSpecs);
  if (options.positional.length > 0) {
    throw new SidecarError(
      ExitCode.Usage,
      `unexpected argument ${JSON.stringify(options.positional[0])}; see --help`,
    );
  }
  const relay = checkRelayUrl(required(options.get("relay"), "relay"));
  const relayUrl = relay.origin;
  const network = required(options.get("network"), "network");
  const secretFile = options.get("admin-secret-file");
  const adminSecret = secretFile
    ? readSecret(secretFile)
    : required(options.get("admin-secret"), "admin-secret");
  const daemon = readDaemonSettings(options);
  const addressOverride = options.get("address");
  if (addressOverride !== undefined) {
    try {
      parseInterfaceAddress(addressOverride, "--address");
    } catch (error) {
      throw new SidecarError(ExitCode.Usage, (error as Error).message);
    }
  }

  const transport = choiceOption(options, "transport", ["websocket", "http"], "websocket");
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

  const shutdown = watchShutdown();
  const address = await firstContact(
    shutdown,
    async () =>
      addressOverride ??
      retryWithBackoff({
        what: `reading network ${network} from ${relayUrl}`,
        attempt: () => fetchServerAddress(relayUrl, network, adminSecret, tls, proxy),
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
  });
  return runUntilShutdown(link, daemon, shutdown, log);
}
