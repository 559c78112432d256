/**
 * `siderolink-sidecar join [API-URL]`: the node role. Provisions with the relay (or any
 * SideroLink API) the way Talos does, then hands the link to NodeLink, which keeps it up: the
 * tunnel stream reconnects by itself, the handshake is watched every 30 s, and the node
 * provisions again when the relay forgot it or the link stayed dead for 275 s.
 */
import { readFileSync } from "node:fs";
import { type ApiUrl, parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { parseSideroLinkConfig } from "../../shared/siderolink/config.ts";
import { SideroLinkError } from "../../shared/siderolink/errors.ts";
import { formatKey, generatePrivateKey, publicKey } from "../../shared/siderolink/keys.ts";
import {
  DAEMON_OPTION_SPECS,
  daemonCommand,
  firstContact,
  preflight,
  readDaemonSettings,
  runUntilShutdown,
} from "../daemon.ts";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import { resolveIdentity } from "../identity.ts";
import { retryWithBackoff, watchShutdown } from "../lifecycle.ts";
import { type Logger, redactUrl } from "../log.ts";
import { NodeLink } from "../node-link.ts";
import { choiceOption, parseOptions } from "../options.ts";
import {
  createProvisionTransport,
  defaultProvisionProtocol,
  NodeRefusedError,
  type ProvisionProtocol,
  type ProvisionResult,
  ProvisionRetryableError,
  provision,
} from "../provision-client.ts";
import { DEFAULT_STATE_DIRECTORY } from "../state.ts";
import { DEFAULT_RUN_DIRECTORY } from "../status.ts";
import { TRANSPORT_CHOICES } from "../transport/transport.ts";
import type { Command } from "./command.ts";

const help = `Usage: siderolink-sidecar join [OPTIONS] [API-URL]

Joins this machine to a SideroLink network as Talos does, through a relay when UDP is blocked.
Runs until SIGINT or SIGTERM, then removes the interface, its routes and its sockets.

API-URL (or the environment variable SIDEROLINK_API) is Talos's siderolink.api value, e.g.
  https://relay.example.com?jointoken=NETWORK.SECRET&grpc_tunnel=true
  grpc://10.0.0.1:8787?jointoken=NETWORK.SECRET
No scheme means grpc:// (plaintext HTTP/2); https and any other scheme use TLS (port 443).

Options (environment variable in brackets):
  --config FILE             read apiUrl (and uniqueToken) from a SideroLinkConfig document
                            instead of API-URL                                [SIDEROLINK_CONFIG]
  --iface NAME              interface to create (default siderolink); two sidecars on one
                            host need distinct names                          [SIDEROLINK_IFACE]
  --state DIR               keeps the unique token (default ${DEFAULT_STATE_DIRECTORY})
                                                                           [SIDEROLINK_STATE_DIR]
  --run-dir DIR             where the status socket goes (default ${DEFAULT_RUN_DIRECTORY})
                                                                             [SIDEROLINK_RUN_DIR]
  --node-uuid UUID          node UUID to present (default: /sys/class/dmi/id/product_uuid, else
                            derived from /etc/machine-id)                 [SIDEROLINK_NODE_UUID]
  --unique-token TOKEN      node unique token (default: generated once, kept in the state dir)
                                                                      [SIDEROLINK_UNIQUE_TOKEN]
  --transport KIND          auto (default, as for serve), websocket, grpc or http: how to
                            tunnel when the server asks for it. http is the HTTP-only tunnel
                            (gRPC-web over HTTP/1.1 requests), for networks whose proxies drop
                            WebSockets and HTTP/2. auto starts on grpc for grpc:// URLs,
                            websocket otherwise, falls back to http when that fails, and moves
                            back when it works again
                                                                         [SIDEROLINK_TRANSPORT]
  --network NAME            the relay network for the WebSocket tunnel (default: the part of
                            the join token before the first ".")           [SIDEROLINK_NETWORK]
  --provision-protocol P    auto, grpc, connect or grpc-web (auto: grpc for grpc://, connect
                            otherwise)                          [SIDEROLINK_PROVISION_PROTOCOL]
  --wireguard BACKEND       auto, userspace or kernel (auto: kernel when the host has the module)
                                                                         [SIDEROLINK_WIREGUARD]
  --wireguard-go CMD        make the kernel backend's interface by running CMD IFACE (e.g.
                            wireguard-go) instead of the kernel module
                                                          [WG_QUICK_USERSPACE_IMPLEMENTATION]
  --ca-file FILE            trust this CA (PEM) for the relay's TLS instead of the system roots
                                                                           [SIDEROLINK_CA_FILE]
  --insecure                do not verify the relay's TLS certificate (warns at every start)
  --metrics-port PORT       serve Prometheus metrics on 127.0.0.1:PORT (default: off)
                                                                      [SIDEROLINK_METRICS_PORT]
  --proxy URL               reach the relay through this HTTP proxy (CONNECT; user:password@ in
                            the URL for Basic auth); default: HTTPS_PROXY or HTTP_PROXY by the
                            URL's scheme, except hosts in NO_PROXY               [SIDEROLINK_PROXY]
  --connect-timeout SEC     give up (exit ${ExitCode.RelayUnreachable}) when the relay stays unreachable this long at
                            start; 0 retries forever (default)    [SIDEROLINK_CONNECT_TIMEOUT]
  -h, --help                show this text

Exit status: 0 after SIGINT/SIGTERM; ${ExitCode.Usage} bad option; ${ExitCode.NoNetAdmin} no CAP_NET_ADMIN; ${ExitCode.NoTun} no /dev/net/tun;
${ExitCode.BadUrl} bad API URL or config; ${ExitCode.BadCredentials} join token refused; ${ExitCode.RelayUnreachable} relay unreachable for --connect-timeout;
${ExitCode.NoAddon} packet I/O addon missing; ${ExitCode.Failure} anything else. Logs are JSON lines on standard error (LOG_LEVEL=debug for more).
`;

const OPTION_SPECS = [
  ...DAEMON_OPTION_SPECS,
  { name: "config", value: true, env: "SIDEROLINK_CONFIG" },
  { name: "node-uuid", value: true, env: "SIDEROLINK_NODE_UUID" },
  { name: "unique-token", value: true, env: "SIDEROLINK_UNIQUE_TOKEN" },
  { name: "transport", value: true, env: "SIDEROLINK_TRANSPORT" },
  { name: "network", value: true, env: "SIDEROLINK_NETWORK" },
  { name: "provision-protocol", value: true, env: "SIDEROLINK_PROVISION_PROTOCOL" },
];

export const joinCommand: Command = daemonCommand(
  "join",
  "join this machine to a SideroLink network (node role)",
  help,
  join,
);

interface JoinSettings {
  readonly api: ApiUrl;
  readonly apiText: string;
  readonly uniqueToken: string | undefined;
}

function readApi(
  positional: readonly string[],
  configFile: string | undefined,
  envApi: string | undefined,
): JoinSettings {
  try {
    if (configFile !== undefined) {
      if (positional.length > 0)
        throw new SidecarError(ExitCode.Usage, "give API-URL or --config, not both");
      let text: string;
      try {
        text = readFileSync(configFile, "utf8");
      } catch (cause) {
        throw new SidecarError(
          ExitCode.BadUrl,
          `--config ${configFile}: ${(cause as Error).message}`,
        );
      }
      const config = parseSideroLinkConfig(text);
      return { api: config.api, apiText: config.apiUrl, uniqueToken: config.uniqueToken };
    }
    if (positional.length > 1)
      throw new SidecarError(ExitCode.Usage, `expected one API-URL, got ${positional.length}`);
    const text = positional[0] ?? envApi;
    if (text === undefined) {
      throw new SidecarError(
        ExitCode.Usage,
        "no API URL: pass API-URL, --config FILE or SIDEROLINK_API; see --help",
      );
    }
    return { api: parseApiUrl(text), apiText: text, uniqueToken: undefined };
  } catch (error) {
    if (error instanceof SideroLinkError) throw new SidecarError(ExitCode.BadUrl, error.message);
    throw error;
  }
}

async function join(args: string[], log: Logger): Promise<number> {
  const options = parseOptions(args, OPTION_SPECS);
  const settings = readApi(options.positional, options.get("config"), process.env.SIDEROLINK_API);
  const { api } = settings;
  const daemon = readDaemonSettings(options);
  const transportChoice = choiceOption(options, "transport", TRANSPORT_CHOICES, "auto");
  const protocolChoice = choiceOption(
    options,
    "provision-protocol",
    ["auto", "grpc", "connect", "grpc-web"],
    "auto",
  );
  if (api.joinToken === undefined) {
    log.warn("the API URL has no jointoken; the relay will refuse Provision without one");
  }

  const { backendKind, tls, proxy } = await preflight(daemon, options, log);
  const identity = resolveIdentity({
    uuid: options.get("node-uuid"),
    uniqueToken: options.get("unique-token") ?? settings.uniqueToken,
    stateDirectory: daemon.stateDirectory,
  });
  const privateKey = generatePrivateKey();
  const nodePublicKey = formatKey(publicKey(privateKey));
  const protocol: ProvisionProtocol =
    protocolChoice === "auto" ? defaultProvisionProtocol(api) : protocolChoice;
  const provisionTransport = createProvisionTransport(api, protocol, tls, proxy);
  log.info("starting", {
    api: redactUrl(settings.apiText),
    iface: daemon.iface,
    backend: backendKind,
    provisionProtocol: protocol,
    nodeUuid: identity.nodeUuid,
    uuidSource: identity.uuidSource,
    publicKey: nodePublicKey,
  });

  const shutdown = watchShutdown();
  const doProvision = (
    timeoutMs: number,
    retryable: (error: unknown) => boolean = (error) => error instanceof ProvisionRetryableError,
  ): Promise<ProvisionResult> =>
    retryWithBackoff({
      what: `Provision at ${api.origin}`,
      attempt: () =>
        provision(provisionTransport, {
          nodeUuid: identity.nodeUuid,
          nodePublicKey,
          joinToken: api.joinToken,
          uniqueToken: identity.uniqueToken,
          wireguardOverGrpc: api.grpcTunnel,
        }),
      retryable,
      log,
      signal: shutdown.signal,
      timeoutMs,
    });
  const first = await firstContact(shutdown, () => doProvision(daemon.connectTimeoutMs));
  if (first === undefined) return 0;

  const link = new NodeLink({
    api,
    iface: daemon.iface,
    backendKind,
    wireguardGo: daemon.wireguardGo,
    privateKey,
    tls,
    proxy,
    log,
    shutdown,
    transportChoice,
    network: options.get("network"),
    // Once running, a revoked node waits for the operator's `node admit`, retrying as Talos does.
    reprovision: () =>
      doProvision(
        0,
        (error) => error instanceof ProvisionRetryableError || error instanceof NodeRefusedError,
      ),
  });
  const relay = redactUrl(settings.apiText);
  return runUntilShutdown(
    {
      start: () => link.start(first),
      snapshot: () => link.snapshot(relay),
      close: () => link.close(),
    },
    daemon,
    shutdown,
    log,
  );
}
