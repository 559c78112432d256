/**
 * `siderolink-sidecar gateway`: the site gateway role. Serves Talos's SideroLink API on the
 * site's LAN and carries the machines' WireGuard ciphertext to a relay over HTTPS, so machines
 * behind a firewall that drops UDP reach even a Workers relay with stock kernel arguments.
 */
import {
  DAEMON_OPTION_SPECS,
  daemonCommand,
  loadRelayAccess,
  readDaemonSettings,
  runUntilShutdown,
} from "../daemon.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { DEFAULT_IDLE_TIMEOUT_MS, Gateway } from "../gateway/gateway.ts";
import {
  GATEWAY_TRANSPORT_KINDS,
  type GatewayTransportKind,
  relayApiUrl,
} from "../gateway/relay-tunnel.ts";
import { watchShutdown } from "../lifecycle.ts";
import type { Logger } from "../log.ts";
import {
  choiceOption,
  integerOption,
  listenOption,
  parseOptions,
  relayUrlOption,
  requiredOption,
} from "../options.ts";
import { DEFAULT_STATE_DIRECTORY } from "../state.ts";
import { DEFAULT_RUN_DIRECTORY } from "../status.ts";
import type { Command } from "./command.ts";

const help = `Usage: siderolink-sidecar gateway --relay URL --network NAME --listen ADDRESS:PORT [OPTIONS]

Serves SideroLink's API to the Talos machines of a site whose egress drops UDP, and carries
their WireGuard datagrams (ciphertext only; the gateway holds no key) to the relay over HTTPS.
Machines point their kernel argument at it, unchanged:
  siderolink.api=grpc://GATEWAY:PORT?jointoken=TOKEN&grpc_tunnel=true   (WireGuard over gRPC)
  siderolink.api=grpc://GATEWAY:PORT?jointoken=TOKEN                    (kernel WireGuard over
                                                     UDP to the gateway; needs --wireguard-listen)
Provision is forwarded to the relay, which checks the join token and answers; each machine gets
a relay tunnel of its own, closed once the machine has been silent for --idle-timeout.

Options (environment variable in brackets):
  --relay URL               the relay's base URL, http(s)://host:port           [SIDEROLINK_RELAY]
  --network NAME            the relay network of the site's machines        [SIDEROLINK_NETWORK]
  --listen ADDRESS:PORT     where machines reach the API (e.g. 0.0.0.0:50000)
                                                                  [SIDEROLINK_GATEWAY_LISTEN]
  --tls-cert FILE           serve the API over TLS (https:// URLs) with this certificate (PEM)
  --tls-key FILE            and this key; without both, plaintext HTTP/2 (grpc:// URLs)
  --wireguard-listen ADDRESS:PORT
                            a UDP endpoint for machines on kernel WireGuard (e.g.
                            0.0.0.0:51820); without it every machine tunnels over gRPC
                                                        [SIDEROLINK_GATEWAY_WIREGUARD_LISTEN]
  --transport KIND          the machines' relay tunnels: websocket (default), grpc (a Node
                            relay only), http (the HTTP-only tunnel, for networks whose
                            proxies drop WebSockets), or auto (WebSocket, falling back to
                            http and moving back when it works again)  [SIDEROLINK_TRANSPORT]
  --provision-protocol P    connect or grpc-web: how Provision reaches the relay (default
                            connect)                             [SIDEROLINK_PROVISION_PROTOCOL]
  --idle-timeout SEC        close a machine's relay tunnel after this long without a datagram
                            or a stream (default ${DEFAULT_IDLE_TIMEOUT_MS / 1000})     [SIDEROLINK_GATEWAY_IDLE_TIMEOUT]
  --name NAME               names the status socket: status --iface NAME (default gateway)
  --state DIR               keeps the UDP machines' LAN addresses across restarts (default
                            ${DEFAULT_STATE_DIRECTORY})                  [SIDEROLINK_STATE_DIR]
  --run-dir DIR             where the status socket goes (default ${DEFAULT_RUN_DIRECTORY})
                                                                             [SIDEROLINK_RUN_DIR]
  --ca-file FILE            trust this CA (PEM) for the relay's TLS          [SIDEROLINK_CA_FILE]
  --insecure                do not verify the relay's TLS certificate (warns at every start)
  --metrics-port PORT       serve Prometheus metrics on 127.0.0.1:PORT (default: off)
                                                                      [SIDEROLINK_METRICS_PORT]
  -h, --help                show this text

Exit status: 0 after SIGINT/SIGTERM; ${ExitCode.Usage} bad option; ${ExitCode.BadUrl} bad relay URL; ${ExitCode.Failure} anything else.
`;

const OPTION_SPECS = [
  ...DAEMON_OPTION_SPECS,
  { name: "relay", value: true, env: "SIDEROLINK_RELAY" },
  { name: "network", value: true, env: "SIDEROLINK_NETWORK" },
  { name: "listen", value: true, env: "SIDEROLINK_GATEWAY_LISTEN" },
  { name: "tls-cert", value: true },
  { name: "tls-key", value: true },
  { name: "wireguard-listen", value: true, env: "SIDEROLINK_GATEWAY_WIREGUARD_LISTEN" },
  { name: "transport", value: true, env: "SIDEROLINK_TRANSPORT" },
  { name: "provision-protocol", value: true, env: "SIDEROLINK_PROVISION_PROTOCOL" },
  { name: "idle-timeout", value: true, env: "SIDEROLINK_GATEWAY_IDLE_TIMEOUT" },
  { name: "name", value: true },
];

export const gatewayCommand: Command = daemonCommand(
  "gateway",
  "serve SideroLink to a site's Talos machines through a relay (site gateway role)",
  help,
  gateway,
);

async function gateway(args: string[], log: Logger): Promise<number> {
  const options = parseOptions(args, OPTION_SPECS);
  if (options.positional.length > 0) {
    throw new SidecarError(
      ExitCode.Usage,
      `unexpected argument ${JSON.stringify(options.positional[0])}; see --help`,
    );
  }
  const relayUrl = relayUrlOption(requiredOption(options, "relay"));
  const network = requiredOption(options, "network");
  const listen = listenOption(options, "listen");
  if (listen === undefined)
    throw new SidecarError(ExitCode.Usage, "--listen is required; see --help");
  const certFile = options.get("tls-cert");
  const keyFile = options.get("tls-key");
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new SidecarError(ExitCode.Usage, "give --tls-cert and --tls-key together; see --help");
  const daemon = readDaemonSettings({
    ...options,
    get: (name) => (name === "iface" ? (options.get("name") ?? "gateway") : options.get(name)),
  });
  const transport = choiceOption<GatewayTransportKind>(
    options,
    "transport",
    GATEWAY_TRANSPORT_KINDS,
    "websocket",
  );
  const { tls, proxy } = loadRelayAccess(options, log);

  const role = new Gateway({
    relay: { origin: relayUrl.origin, api: relayApiUrl(relayUrl), network, tls, proxy, transport },
    provisionProtocol: choiceOption(
      options,
      "provision-protocol",
      ["connect", "grpc-web"],
      "connect",
    ),
    listen,
    lanTls: certFile && keyFile ? { certFile, keyFile } : undefined,
    wireguardListen: listenOption(options, "wireguard-listen"),
    idleTimeoutMs:
      integerOption(options, "idle-timeout", DEFAULT_IDLE_TIMEOUT_MS / 1000, 1, 86_400) * 1000,
    stateDirectory: daemon.stateDirectory,
    name: daemon.iface,
    log,
  });
  log.info("starting", { relay: relayUrl.origin, network, transport });
  return runUntilShutdown(role, daemon, watchShutdown(), log);
}
