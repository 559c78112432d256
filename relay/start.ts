/**
 * `npm start`: the Node relay on 127.0.0.1:8787 (or $SIDEROLINK_RELAY_LISTEN) with its store in
 * ./data (or $SIDEROLINK_RELAY_DATA). The first start creates the network `default`, writes its
 * admin secret and its uplink secret to 0600 files beside the store and prints the join token,
 * once: the store keeps only hashes. Every start prints how to put sidecars on it, with no secret
 * on a command line.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { nodeConfig } from "./app/config.ts";
import {
  describeNetwork,
  initializeNetwork,
  mintUplinkSecret,
  type NetworkSummary,
} from "./app/networks.ts";
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
const secretFile = join(dataDir, `${NETWORK}.admin-secret`);
const uplinkSecretFile = join(dataDir, `${NETWORK}.uplink-secret`);
const created =
  (await runtime.store.network()) === undefined ? await initializeNetwork(runtime) : undefined;
if (created) {
  writeFileSync(secretFile, `${created.adminSecret}\n`, { mode: 0o600 });
  writeFileSync(uplinkSecretFile, `${created.uplinkSecret}\n`, { mode: 0o600 });
  await server.directory.created(NETWORK);
} else if ((await runtime.store.network())?.uplinkSecretHash === null) {
  // Created by a relay before uplinks had their own secret: it gets one now.
  writeFileSync(uplinkSecretFile, `${await mintUplinkSecret(runtime)}\n`, { mode: 0o600 });
}
const summary = await describeNetwork(
  await server.directory.runtime(NETWORK),
  server.nodeBaseUrl,
  created,
);
process.stdout.write(banner(summary));

function banner(network: NetworkSummary): string {
  const mint = `siderolink-relay token create ${network.name} --data ${dataDir}`;
  const token = network.joinToken
    ? `join token:   ${network.joinToken}
              (shown this once: the relay keeps only its hash; more with: ${mint})`
    : `join token:   shown when the network was created; a new one: ${mint}`;
  const secret = existsSync(secretFile)
    ? `admin secret: in ${secretFile} (0600)`
    : `admin secret: ${secretFile} is gone; the relay keeps only its hash (recreate the network to get a new one)`;
  const uplinkSecret = existsSync(uplinkSecretFile)
    ? `uplink secret: in ${uplinkSecretFile} (0600)`
    : `uplink secret: ${uplinkSecretFile} is gone; the relay keeps only its hash (a new one, shown once: siderolink-relay network uplink-secret ${network.name} --data ${dataDir})`;
  const nodeUrl = network.joinToken
    ? network.apiUrl
    : `${network.apiUrl}?jointoken=JOIN_TOKEN&grpc_tunnel=true`;
  return `siderolink-relay listening on ${server.url} (gRPC, Connect, gRPC-web, WebSocket)
data: ${server.database.path}
network "${network.name}" ${created ? "created" : "ready"}: prefix ${network.prefix}, server ${network.serverAddress}

${token}
${secret}
${uplinkSecret}

management server (server role, holds the WireGuard server key):
  siderolink-sidecar serve --relay ${server.url} --network ${network.name} --uplink-secret-file ${uplinkSecretFile}

each node (node role; Talos: siderolink.api=${nodeUrl}):
  siderolink-sidecar join '${nodeUrl}'

Ctrl-C stops the relay; state stays in ${dataDir}.
`;
}
