#!/usr/bin/env node
/**
 * siderolink-relay: run the Node relay, and manage networks either in a local data dir or on a
 * remote relay through its admin API (--relay URL).
 */
import { parseArgs } from "node:util";
import { VERSION } from "../shared/version.ts";
import { ConfigError, nodeConfig, SETTINGS, TRUSTED_PROXIES } from "./app/config.ts";
import {
  admitNode,
  assignAddress,
  createToken,
  describeNetwork,
  initializeNetwork,
  listNodes,
  listTokens,
  mintUplinkSecret,
  type NetworkCreation,
  type NetworkSummary,
  type NodeAdmission,
  type NodeSummary,
  resetServerKey,
  revokeNodes,
  revokeToken,
  setRequireUniqueToken,
  type TokenSummary,
} from "./app/networks.ts";
import { createNetworkRuntime, type NetworkRuntime } from "./app/runtime.ts";
import {
  CONNECTION_FLAG_OPTIONS,
  CONNECTION_FLAG_USAGE,
  connectionLimitsFromFlags,
  DATA_DIR_ENV,
  DEFAULT_LISTEN,
  defaultDataDir,
  OPERATOR_TOKEN_ENV,
  parseListen,
  runRelay,
} from "./node/serve.ts";
import { openSqliteDatabase, type SqliteDatabase } from "./node/sqlite.ts";
import { listNetworkNames } from "./store/schema.ts";
import { createSqlNetworkStore } from "./store/sql-store.ts";
import { printable } from "./terminal-text.ts";

const PUBLIC_URL_ENV = "SIDEROLINK_RELAY_PUBLIC_URL";

const USAGE = `Usage: siderolink-relay COMMAND [ARGS...] [OPTIONS]

Relays SideroLink (Talos's WireGuard management overlay) for machines whose networks block UDP.

Run the relay:
  serve [--listen HOST:PORT] [--data DIR] [--tls-cert FILE --tls-key FILE]
        [--operator-token TOKEN] [--public-url URL] [--trusted-proxies LIST] [LIMITS]
      Serves gRPC (h2c, or TLS with ALPN h2), Connect, gRPC-web and WebSockets on one port.
      Default listen ${DEFAULT_LISTEN}. The operator token (or $${OPERATOR_TOKEN_ENV})
      enables the admin API used by --relay below. Logs one JSON object per line on stdout.
      --trusted-proxies: addresses or prefixes (comma-separated) of reverse proxies whose
      X-Forwarded-For names the client, for per-client limits.
      LIMITS: --NAME VALUE, or $SIDEROLINK_RELAY_NAME (upper case, _ for -), for each of:
${SETTINGS.map((setting) => `        --${setting.name}  ${setting.meaning}`).join("\n")}
      Connection limits (HTTP/2 streams are per connection; a Provision or a first
      CreateStream message later than its deadline fails DEADLINE_EXCEEDED; a connection with
      no stream open closes after the idle timeout):
${CONNECTION_FLAG_USAGE}
      The README's limits table gives each default.

Manage networks (a local data dir, or a remote relay with --relay URL):
  network create NAME [--json] [--omni-prefix] [--require-unique-token]
                                   create a network; prints {name, apiUrl, joinToken, adminSecret,
                                   uplinkSecret}: the only time the relay shows these secrets (it
                                   keeps hashes). The uplink secret is the server sidecar's
                                   (serve --uplink-secret-file); the admin secret opens the admin API.
                                   --omni-prefix: the prefix Omni and SideroLink's agent use,
                                   fdae:41e4:649b:9303::/64 (server ::1), so Omni-style kernel
                                   arguments work unchanged; every such network shares it.
                                   --require-unique-token: refuse nodes that send no unique token
  network show NAME [--json]       an existing network, without its secrets
  network list [--json]
  network require-unique-token NAME on|off
                                   refuse (on) or accept (off) nodes without a unique token
  network reset-server-key NAME    forget the server key pinned by the first uplink, and close the
                                   uplink: the next uplink's key is pinned (the server's key changed)
  network uplink-secret NAME       mint a new uplink secret (shown once); the previous one, or for
                                   an older network the admin secret, opens the uplink no more
  token create NETWORK [--max-nodes N] [--json]
                                   a new join token (shown once); --max-nodes caps the distinct
                                   nodes it may provision (default: no cap of its own)
  token list NETWORK [--json]      ids and states, not the secrets
  token revoke NETWORK ID|TOKEN    provisioning with it fails from now on
  node list NETWORK [--json]
  node revoke NETWORK NODE         NODE: node UUID, address, virtual address or public key;
                                   it stays out (Provision refused) until admitted
  node admit NETWORK UUID          let a revoked node UUID provision again, and let its next
                                   Provision take its record over with a new unique token and
                                   key (a reinstalled machine), keeping its addresses
  node assign NETWORK UUID ADDRESS the address this node UUID gets when it first provisions
                                   (ADDRESS "-" removes the assignment)

Options:
  --data DIR        data dir (default $${DATA_DIR_ENV} or ./data)
  --relay URL       manage a running relay over its admin API instead of a data dir; the
                    operator token comes from $${OPERATOR_TOKEN_ENV}
  --public-url URL  how nodes reach the relay, for apiUrl in local mode (default
                    $${PUBLIC_URL_ENV} or grpc://${DEFAULT_LISTEN})
  --json            machine-readable output
  -h, --help        this text
  -V, --version     print the version

With a relay running on the data dir, prefer --relay: revoking a node then also closes its
stream and tells the management server at once.
`;

interface Options {
  readonly json: boolean;
  readonly requireUniqueToken: boolean;
  readonly maxNodes: number | null;
  readonly data: string;
  readonly relay: string | undefined;
  readonly publicUrl: string;
  readonly omniPrefix: boolean;
}

/** Network operations, local or remote. */
interface Manager {
  createNetwork(name: string, creation: NetworkCreation): Promise<NetworkSummary>;
  setRequireUniqueToken(network: string, required: boolean): Promise<NetworkSummary>;
  resetServerKey(network: string): Promise<NetworkSummary>;
  mintUplinkSecret(network: string): Promise<string>;
  admitNode(network: string, nodeUuid: string): Promise<NodeAdmission>;
  showNetwork(name: string): Promise<NetworkSummary>;
  listNetworks(): Promise<string[]>;
  createToken(network: string, maxNodes: number | null): Promise<TokenSummary>;
  listTokens(network: string): Promise<TokenSummary[]>;
  revokeToken(network: string, id: string): Promise<void>;
  listNodes(network: string): Promise<NodeSummary[]>;
  revokeNode(network: string, node: string): Promise<NodeSummary[]>;
  assignAddress(network: string, nodeUuid: string, address: string | undefined): Promise<void>;
  close(): void;
}

export class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: "boolean", default: false },
      data: { type: "string" },
      relay: { type: "string" },
      listen: { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "operator-token": { type: "string" },
      "public-url": { type: "string" },
      "omni-prefix": { type: "boolean", default: false },
      ...CONNECTION_FLAG_OPTIONS,
      [TRUSTED_PROXIES]: { type: "string" },
      ...Object.fromEntries(SETTINGS.map((setting) => [setting.name, { type: "string" as const }])),
      "require-unique-token": { type: "boolean", default: false },
      "max-nodes": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
      version: { type: "boolean", short: "V", default: false },
    },
  });
  if (values.version) {
    process.stdout.write(`siderolink-relay ${VERSION}\n`);
    return 0;
  }
  if (values.help || positionals.length === 0) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  const maxNodes = values["max-nodes"];
  if (maxNodes !== undefined && !/^[1-9][0-9]*$/.test(maxNodes))
    throw new UsageError(`--max-nodes ${JSON.stringify(maxNodes)} is not a whole number >= 1`);
  const options: Options = {
    json: values.json,
    requireUniqueToken: values["require-unique-token"],
    maxNodes: maxNodes === undefined ? null : Number(maxNodes),
    data: values.data ?? defaultDataDir(),
    relay: values.relay,
    publicUrl: values["public-url"] ?? (process.env[PUBLIC_URL_ENV] || `grpc://${DEFAULT_LISTEN}`),
    omniPrefix: values["omni-prefix"],
  };
  const [command, verb, ...rest] = positionals;

  if (command === "serve") {
    const { host, port } = parseListen(values.listen ?? DEFAULT_LISTEN);
    const cert = values["tls-cert"];
    const key = values["tls-key"];
    if ((cert === undefined) !== (key === undefined))
      throw new UsageError("--tls-cert and --tls-key go together");
    const flags: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(values))
      if (typeof value === "string") flags[name] = value;
    const config = nodeConfig(flags, process.env);
    const server = await runRelay({
      host,
      port,
      dataDir: options.data,
      limits: config.limits,
      hubLimits: config.hubLimits,
      trustedProxies: config.trustedProxies,
      tls: cert && key ? { certFile: cert, keyFile: key } : undefined,
      operatorToken: values["operator-token"] ?? (process.env[OPERATOR_TOKEN_ENV] || undefined),
      nodeBaseUrl: values["public-url"],
      connections: connectionLimitsFromFlags(values),
    });
    process.stderr.write(
      `siderolink-relay: listening on ${server.url}; data in ${server.database.path}\n`,
    );
    return new Promise<number>(() => {});
  }

  const manager = options.relay ? remoteManager(options.relay) : localManager(options);
  try {
    return await manage(manager, options, command, verb, rest);
  } finally {
    manager.close();
  }
}

async function manage(
  manager: Manager,
  options: Options,
  command: string,
  verb: string | undefined,
  args: string[],
): Promise<number> {
  const need = (count: number, shape: string): string[] => {
    if (args.length !== count)
      throw new UsageError(`usage: siderolink-relay ${command} ${verb} ${shape}`);
    return args;
  };
  const print = (value: unknown, text: () => string): void => {
    process.stdout.write(options.json ? `${JSON.stringify(value, null, 2)}\n` : text());
  };
  switch (`${command} ${verb ?? ""}`) {
    case "network create":
    case "network show": {
      const [name] = need(1, "NAME");
      if (options.omniPrefix && verb !== "create")
        throw new UsageError("--omni-prefix goes with network create");
      const network =
        verb === "create"
          ? await manager.createNetwork(name, {
              omniPrefix: options.omniPrefix,
              requireUniqueToken: options.requireUniqueToken,
            })
          : await manager.showNetwork(name);
      print(network, () => networkText(network));
      return 0;
    }
    case "network require-unique-token": {
      const [name, value] = need(2, "NAME on|off");
      if (value !== "on" && value !== "off")
        throw new UsageError(`expected on or off, got ${value}`);
      const network = await manager.setRequireUniqueToken(name, value === "on");
      print(network, () => networkText(network));
      return 0;
    }
    case "network reset-server-key": {
      const [name] = need(1, "NAME");
      const network = await manager.resetServerKey(name);
      print(
        network,
        () => `${network.name}: server key pin cleared; the next uplink's HELLO pins its key\n`,
      );
      return 0;
    }
    case "network uplink-secret": {
      const [name] = need(1, "NAME");
      const uplinkSecret = await manager.mintUplinkSecret(name);
      print(
        { name, uplinkSecret },
        () =>
          `${uplinkSecret}\n(shown only now: store it in a 0600 file for siderolink-sidecar serve --uplink-secret-file)\n`,
      );
      return 0;
    }
    case "network list": {
      need(0, "");
      const names = await manager.listNetworks();
      print({ networks: names }, () => names.map((name) => `${name}\n`).join(""));
      return 0;
    }
    case "token create": {
      const token = await manager.createToken(need(1, "NETWORK")[0], options.maxNodes);
      print(token, () => `${token.joinToken}\n`);
      return 0;
    }
    case "token list": {
      const tokens = await manager.listTokens(need(1, "NETWORK")[0]);
      print({ tokens }, () =>
        tokens
          .map(
            (t) =>
              `${t.id}  ${t.revokedAt ? `revoked ${t.revokedAt}` : "active"}  created ${t.createdAt}\n`,
          )
          .join(""),
      );
      return 0;
    }
    case "token revoke": {
      const [network, id] = need(2, "NETWORK ID|TOKEN");
      await manager.revokeToken(network, id);
      print({ revoked: id }, () => `revoked ${id}\n`);
      return 0;
    }
    case "node list": {
      const nodes = await manager.listNodes(need(1, "NETWORK")[0]);
      print({ nodes }, () =>
        nodes
          .map(
            (n) =>
              `${printable(n.nodeUuid)}  ${n.address}  ${n.connected ? "connected" : "offline"}  last seen ${n.lastSeen}\n`,
          )
          .join(""),
      );
      return 0;
    }
    case "node revoke": {
      const [network, node] = need(2, "NETWORK NODE");
      const revoked = await manager.revokeNode(network, node);
      print({ revoked }, () =>
        revoked.map((n) => `revoked ${printable(n.nodeUuid)} (${n.address})\n`).join(""),
      );
      return 0;
    }
    case "node admit": {
      const [network, nodeUuid] = need(2, "NETWORK UUID");
      const admitted = await manager.admitNode(network, nodeUuid);
      print({ admitted }, () => admissionText(admitted));
      return 0;
    }
    case "node assign": {
      const [network, nodeUuid, address] = need(3, "NETWORK UUID ADDRESS|-");
      await manager.assignAddress(network, nodeUuid, address === "-" ? undefined : address);
      print({ nodeUuid, address: address === "-" ? null : address }, () =>
        address === "-"
          ? `${printable(nodeUuid)}: assignment removed\n`
          : `${printable(nodeUuid)} -> ${printable(address)}\n`,
      );
      return 0;
    }
    default:
      throw new UsageError(
        `unknown command "${[command, verb].filter(Boolean).join(" ")}"; see siderolink-relay --help`,
      );
  }
}

function admissionText(admitted: NodeAdmission): string {
  const what = [
    admitted.revocationsLifted > 0 ? "its revocation is lifted" : "",
    admitted.rebindAllowed ? "its next Provision may take its record over" : "",
  ].filter(Boolean);
  return `admitted ${printable(admitted.nodeUuid)}: ${what.join("; ")}\n`;
}

function networkText(network: NetworkSummary): string {
  const secrets =
    network.adminSecret === null
      ? `secrets:      shown once, at creation; a new join token: siderolink-relay token create ${network.name}
`
      : `joinToken:    ${network.joinToken}
adminSecret:  ${network.adminSecret}
uplinkSecret: ${network.uplinkSecret}
              (shown only now: the relay keeps hashes; store each secret in a 0600 file: the
              uplink secret for siderolink-sidecar serve --uplink-secret-file, the admin secret
              for the admin API)
`;
  return `network:      ${network.name}
apiUrl:       ${network.apiUrl}
${secrets}node:         ${network.joinCommand ?? "(with a join token: siderolink-relay token create)"}
prefix:       ${network.prefix} (server ${network.serverAddress})
unique token: ${network.requireUniqueToken ? "required" : "optional"}
server key:   ${network.serverPublicKey ?? "(no uplink yet)"}
`;
}

function localManager(options: Options): Manager {
  let database: SqliteDatabase | undefined;
  const db = (): SqliteDatabase => {
    database ??= openSqliteDatabase(options.data);
    return database;
  };
  const runtime = (name: string): NetworkRuntime =>
    createNetworkRuntime({
      store: createSqlNetworkStore(db(), name),
      acceptWebSocket: () => {
        throw new Error("the CLI accepts no streams");
      },
    });
  return {
    async createNetwork(name, creation) {
      const network = runtime(name);
      const created = await initializeNetwork(network, Date.now(), creation);
      return describeNetwork(network, options.publicUrl, created);
    },
    async setRequireUniqueToken(name, required) {
      await setRequireUniqueToken(runtime(name), required);
      return describeNetwork(runtime(name), options.publicUrl);
    },
    async resetServerKey(name) {
      // A relay running on this data dir keeps its live uplink until that reconnects: prefer --relay.
      await resetServerKey(runtime(name));
      return describeNetwork(runtime(name), options.publicUrl);
    },
    mintUplinkSecret: (name) => mintUplinkSecret(runtime(name)),
    admitNode: (network, nodeUuid) => admitNode(runtime(network), nodeUuid),
    showNetwork: (name) => describeNetwork(runtime(name), options.publicUrl),
    listNetworks: async () => listNetworkNames(db()),
    createToken: (network, maxNodes) => createToken(runtime(network), Date.now(), maxNodes),
    listTokens: (network) => listTokens(runtime(network)),
    async revokeToken(network, id) {
      if (!(await revokeToken(runtime(network), id)))
        throw new UsageError(`no active join token ${JSON.stringify(id)} in ${network}`);
    },
    listNodes: (network) => listNodes(runtime(network)),
    async revokeNode(network, node) {
      const revoked = await revokeNodes(runtime(network), node);
      if (revoked.length === 0)
        throw new UsageError(`no node in ${network} matches ${JSON.stringify(node)}`);
      return revoked;
    },
    async assignAddress(network, nodeUuid, address) {
      await assignAddress(runtime(network), nodeUuid, address);
    },
    close() {
      database?.close();
    },
  };
}

function remoteManager(relay: string): Manager {
  const token = process.env[OPERATOR_TOKEN_ENV];
  if (!token) throw new UsageError(`--relay needs the operator token in $${OPERATOR_TOKEN_ENV}`);
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const url = new URL(path, relay.endsWith("/") ? relay : `${relay}/`);
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new Error(`${method} ${url}: ${networkFailure(error, url)}`);
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`${method} ${url}: HTTP ${response.status}, not JSON: ${text.slice(0, 200)}`);
    }
    if (!response.ok) {
      const message = (parsed as { error?: string }).error ?? text;
      throw new Error(`${method} ${url}: HTTP ${response.status}: ${message}`);
    }
    return parsed as T;
  };
  const n = (network: string) => `v1/networks/${encodeURIComponent(network)}`;
  return {
    createNetwork: (name, creation) =>
      call("POST", "v1/networks", {
        name,
        ...(creation.omniPrefix ? { omniPrefix: true } : {}),
        ...(creation.requireUniqueToken ? { requireUniqueToken: true } : {}),
      }),
    setRequireUniqueToken: (name, requireUniqueToken) =>
      call("PATCH", n(name), { requireUniqueToken }),
    resetServerKey: (name) => call("DELETE", `${n(name)}/server-key`),
    mintUplinkSecret: async (name) =>
      (await call<{ uplinkSecret: string }>("POST", `${n(name)}/uplink-secret`)).uplinkSecret,
    admitNode: async (network, nodeUuid) =>
      (
        await call<{ admitted: NodeAdmission }>(
          "POST",
          `${n(network)}/nodes/${encodeURIComponent(nodeUuid)}/admit`,
        )
      ).admitted,
    showNetwork: (name) => call("GET", n(name)),
    listNetworks: async () => (await call<{ networks: string[] }>("GET", "v1/networks")).networks,
    createToken: (network, maxNodes) => call("POST", `${n(network)}/tokens`, { maxNodes }),
    listTokens: async (network) =>
      (await call<{ tokens: TokenSummary[] }>("GET", `${n(network)}/tokens`)).tokens,
    async revokeToken(network, id) {
      await call("DELETE", `${n(network)}/tokens/${encodeURIComponent(id)}`);
    },
    listNodes: async (network) =>
      (await call<{ nodes: NodeSummary[] }>("GET", `${n(network)}/nodes`)).nodes,
    revokeNode: async (network, node) =>
      (
        await call<{ revoked: NodeSummary[] }>(
          "DELETE",
          `${n(network)}/nodes/${encodeURIComponent(node)}`,
        )
      ).revoked,
    async assignAddress(network, nodeUuid, address) {
      const path = `${n(network)}/addresses/${encodeURIComponent(nodeUuid)}`;
      await (address === undefined ? call("DELETE", path) : call("PUT", path, { address }));
    },
    close() {},
  };
}

/**
 * Why a request never got an answer, from fetch's error and its causes (undici says "fetch
 * failed" and puts the socket's error in `cause`), with what to check.
 */
export function networkFailure(error: unknown, url: URL): string {
  const causes: string[] = [];
  let code: string | undefined;
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    const errno = (e as { code?: unknown }).code;
    if (code === undefined && typeof errno === "string") code = errno;
    if (e.message && !causes.includes(e.message)) causes.push(e.message);
  }
  const what = causes.join(": ") || String(error);
  const hint = failureHint(code, what, url);
  return hint ? `${what} (${hint})` : what;
}

function failureHint(code: string | undefined, text: string, url: URL): string | undefined {
  if (code === "ECONNREFUSED")
    return `nothing listens on ${url.host}: is the relay running, on this port?`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN")
    return `the name ${url.hostname} does not resolve: check the --relay URL`;
  if (code === "ETIMEDOUT" || code === "UND_ERR_CONNECT_TIMEOUT")
    return `no answer from ${url.host}: check the address and any firewall`;
  if (/SSL|TLS|wrong version number|EPROTO/i.test(`${code ?? ""} ${text}`)) {
    return url.protocol === "https:"
      ? "TLS failed: the relay may serve plain HTTP here; try http:// in --relay"
      : "TLS failed";
  }
  if (code === "UND_ERR_SOCKET" || code === "ECONNRESET") {
    return url.protocol === "http:"
      ? "the connection closed without an HTTP answer: if the relay serves TLS, use https:// in --relay"
      : "the connection closed without an HTTP answer";
  }
  return undefined;
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    const usage =
      error instanceof UsageError ||
      error instanceof ConfigError ||
      (error instanceof Error &&
        "code" in error &&
        String(error.code).startsWith("ERR_PARSE_ARGS"));
    process.stderr.write(
      `siderolink-relay: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = usage ? 2 : 1;
  },
);
