/**
 * `npm start`: the Node relay on 127.0.0.1:8787 (or $SIDEROLINK_RELAY_LISTEN) with its store in
 * ./data (or $SIDEROLINK_RELAY_DATA). The first start creates the network `default`; every
 * start prints how to put sidecars on it.
 */
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { nodeConfig } from "./app/config.ts";
import { describeNetwork, initializeNetwork, type NetworkSummary } from "./app/networks.ts";
import {
  DEFAULT_LISTEN,
  defaultDataDir,
  OPERATOR_TOKEN_ENV,
  parseListen,
  runRelay,
} from "./node/serve.ts";

const NETWORK = "default";

const dataDir = resolve(defaultDataDir());
const { host, port } = parseListen(process.env.SIDEROLINK_RELAY_LISTEN || DEFAULT_LISTEN);
// Limits from SIDEROLINK_RELAY_<NAME> variables, as `siderolink-relay serve` reads them.
const config = nodeConfig({}, process.env);
const server = await runRelay({
  host,
  port,
  dataDir,
  limits: config.limits,
  hubLimits: config.hubLimits,
  trustedProxies: config.trustedProxies,
  operatorToken: process.env[OPERATOR_TOKEN_ENV] || undefined,
});
const runtime = await server.directory.runtime(NETWORK);
const created = (await runtime.store.network()) === undefined;
if (created) await initializeNetwork(runtime);
const summary = await describeNetwork(await server.directory.runtime(NETWORK), server.nodeBaseUrl);
const secretFile = join(dataDir, `${NETWORK}.admin-secret`);
writeFileSync(secretFile, `${summary.adminSecret}\n`, { mode: 0o600 });
process.stdout.write(banner(summary, created, secretFile));

function banner(network: NetworkSummary, isNew: boolean, secretPath: string): string {
  return `siderolink-relay listening on ${server.url} (gRPC, Connect, gRPC-web, WebSocket)
data: ${server.database.path}
network "${network.name}" ${isNew ? "created" : "ready"}: prefix ${network.prefix}, server ${network.serverAddress}

join token:   ${network.joinToken ?? "(all revoked: siderolink-relay token create default)"}
admin secret: in ${secretPath} (and: siderolink-relay network show default --json)

management server (server role, holds the WireGuard server key):
  siderolink-sidecar serve --relay ${server.url} --network ${network.name} --admin-secret "$(cat ${secretPath})"

each node (node role; Talos: siderolink.api=${network.apiUrl}):
  siderolink-sidecar join '${network.apiUrl}'

Ctrl-C stops the relay; state stays in ${dataDir}.
`;
}
