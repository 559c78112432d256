#!/usr/bin/env node
/**
 * siderolink-relay: run the Node relay, and manage networks either in a local data dir or on a
 * remote relay through its admin API (--relay URL).
 */
import { parseArgs } from "node:util";
import {
  admitNode,
  assignAddress,
  createToken,
  describeNetwork,
  initializeNetwork,
  listNodes,
  listTokens,
  type NetworkSummary,
  type NodeSummary,
  revokeNodes,
  revokeToken,
  type TokenSummary,
} from "./app/networks.ts";
import { createNetworkRuntime, type NetworkRuntime } from "./app/runtime.ts";
import {
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

const PUBLIC_URL_ENV = "SIDEROLINK_RELAY_PUBLIC_URL";

const USAGE = `Usage: siderolink-relay COMMAND [ARGS...] [OPTIONS]

Relays SideroLink (Talos's WireGuard management overlay) for machines whose networks block UDP.

Run the relay:
  serve [--listen HOST:PORT] [--data DIR] [--tls-cert FILE --tls-key FILE]
        [--operator-token TOKEN] [--public-url URL]
      Serves gRPC (h2c, or TLS with ALPN h2), Connect, gRPC-web and WebSockets on one port.
      Default listen ${DEFAULT_LISTEN}. The operator token (or $${OPERATOR_TOKEN_ENV})
      enables the admin API used by --relay below.

Manage networks (a local data dir, or a remote relay with --relay URL):
  network create NAME [--json]     create a network; prints {name, apiUrl, joinToken, adminSecret}
  network show NAME [--json]       the same for an existing network
  network list [--json]
  token create NETWORK [--json]    a new join token
  token list NETWORK [--json]
  token revoke NETWORK ID|TOKEN    provisioning with it fails from now on
  node list NETWORK [--json]
  node revoke NETWORK NODE         NODE: node UUID, address, virtual address or public key;
                                   it stays out (Provision refused) until admitted
  node admit NETWORK UUID          lets a revoked node UUID provision again
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

With a relay running on the data dir, prefer --relay: revoking a node then also closes its
stream and tells the management server at once.
`;

interface Options {
  readonly json: boolean;
  readonly data: string;
  readonly relay: string | undefined;
  readonly publicUrl: string;
}

/** Network operations, local or remote. */
interface Manager {
  createNetwork(name: string): Promise<NetworkSummary>;
  showNetwork(name: string): Promise<NetworkSummary>;
  listNetworks(): Promise<string[]>;
  createToken(network: string): Promise<TokenSummary>;
  listTokens(network: string): Promise<TokenSummary[]>;
  revokeToken(network: string, id: string): Promise<void>;
  listNodes(network: string): Promise<NodeSummary[]>;
  revokeNode(network: string, node: string): Promise<NodeSummary[]>;
  admitNode(network: string, nodeUuid: string): Promise<number>;
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
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(USAGE);
    return values.help ? 0 : 2;
  }
  const options: Options = {
    json: values.json,
    data: values.data ?? defaultDataDir(),
    relay: values.relay,
    publicUrl: values["public-url"] ?? (process.env[PUBLIC_URL_ENV] || `grpc://${DEFAULT_LISTEN}`),
  };
  const [command, verb, ...rest] = positionals;

  if (command === "serve") {
    const { host, port } = parseListen(values.listen ?? DEFAULT_LISTEN);
    const cert = values["tls-cert"];
    const key = values["tls-key"];
    if ((cert === undefined) !== (key === undefined))
      throw new UsageError("--tls-cert and --tls-key go together");
    const server = await runRelay({
      host,
      port,
      dataDir: options.data,
      tls: cert && key ? { certFile: cert, keyFile: key } : undefined,
      operatorToken: values["operator-token"] ?? (process.env[OPERATOR_TOKEN_ENV] || undefined),
      nodeBaseUrl: values["public-url"],
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
      const network =
        verb === "create" ? await manager.createNetwork(name) : await manager.showNetwork(name);
      print(network, () => networkText(network));
      return 0;
    }
    case "network list": {
      need(0, "");
      const names = await manager.listNetworks();
      print({ networks: names }, () => names.map((name) => `${name}\n`).join(""));
      return 0;
    }
    case "token create": {
      const token = await manager.createToken(need(1, "NETWORK")[0]);
      print(token, () => `${token.joinToken}\n`);
      return 0;
    }
    case "token list": {
      const tokens = await manager.listTokens(need(1, "NETWORK")[0]);
      print({ tokens }, () =>
        tokens
          .map(
            (t) =>
              `${t.id}  ${t.revokedAt ? `revoked ${t.revokedAt}` : "active"}  ${t.joinToken}\n`,
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
              `${n.nodeUuid}  ${n.address}  ${n.connected ? "connected" : "offline"}  last seen ${n.lastSeen}\n`,
          )
          .join(""),
      );
      return 0;
    }
    case "node revoke": {
      const [network, node] = need(2, "NETWORK NODE");
      const revoked = await manager.revokeNode(network, node);
      print({ revoked }, () =>
        revoked.map((n) => `revoked ${n.nodeUuid} (${n.address})\n`).join(""),
      );
      return 0;
    }
    case "node admit": {
      const [network, nodeUuid] = need(2, "NETWORK UUID");
      const admitted = await manager.admitNode(network, nodeUuid);
      print({ admitted }, () => `admitted ${nodeUuid}\n`);
      return 0;
    }
    case "node assign": {
      const [network, nodeUuid, address] = need(3, "NETWORK UUID ADDRESS|-");
      await manager.assignAddress(network, nodeUuid, address === "-" ? undefined : address);
      print({ nodeUuid, address: address === "-" ? null : address }, () =>
        address === "-" ? `${nodeUuid}: assignment removed\n` : `${nodeUuid} -> ${address}\n`,
      );
      return 0;
    }
    default:
      throw new UsageError(
        `unknown command "${[command, verb].filter(Boolean).join(" ")}"; see siderolink-relay --help`,
      );
  }
}

function networkText(network: NetworkSummary): string {
  return `network:      ${network.name}
apiUrl:       ${network.apiUrl}
joinToken:    ${network.joinToken ?? "(none active)"}
adminSecret:  ${network.adminSecret}
prefix:       ${network.prefix} (server ${network.serverAddress})
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
    async createNetwork(name) {
      const network = runtime(name);
      await initializeNetwork(network);
      return describeNetwork(network, options.publicUrl);
    },
    showNetwork: (name) => describeNetwork(runtime(name), options.publicUrl),
    listNetworks: async () => listNetworkNames(db()),
    createToken: (network) => createToken(runtime(network)),
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
    async admitNode(network, nodeUuid) {
      const admitted = await admitNode(runtime(network), nodeUuid);
      if (admitted === 0)
        throw new UsageError(`node ${JSON.stringify(nodeUuid)} is not revoked in ${network}`);
      return admitted;
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
    const response = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
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
    createNetwork: (name) => call("POST", "v1/networks", { name }),
    showNetwork: (name) => call("GET", n(name)),
    listNetworks: async () => (await call<{ networks: string[] }>("GET", "v1/networks")).networks,
    createToken: (network) => call("POST", `${n(network)}/tokens`),
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
    admitNode: async (network, nodeUuid) =>
      (
        await call<{ admitted: number }>(
          "POST",
          `${n(network)}/nodes/${encodeURIComponent(nodeUuid)}/admit`,
        )
      ).admitted,
    async assignAddress(network, nodeUuid, address) {
      const path = `${n(network)}/addresses/${encodeURIComponent(nodeUuid)}`;
      await (address === undefined ? call("DELETE", path) : call("PUT", path, { address }));
    },
    close() {},
  };
}

main(process.argv.slice(2)).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    const usage =
      error instanceof UsageError ||
      (error instanceof Error &&
        "code" in error &&
        String(error.code).startsWith("ERR_PARSE_ARGS"));
    process.stderr.write(
      `siderolink-relay: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = usage ? 2 : 1;
  },
);
