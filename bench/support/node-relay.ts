/**
 * A Node relay for the benchmarks, run as its own process so that load generators do not share
 * its event loop:
 *
 *   node --expose-gc node-relay.ts DATA_DIR NETWORK [SEED_PEERS]
 *
 * Listens on 127.0.0.1 (a free port), creates NETWORK, stores SEED_PEERS provisioned peers
 * straight into the network's store (as Provision would leave them, without the uplink's ACK
 * round trip), and prints one JSON line: { url, network, adminSecret, uplinkSecret, joinToken, virtualAddresses }.
 *
 * The abuse limits (Provision rates, peer and tunnel caps, each node stream's datagram rate,
 * connections per client address) are raised far above any benchmark's rate where the relay
 * build has them, so that the benchmarks measure the relay rather than its limiters.
 * SIGUSR2 runs a full garbage collection and prints { rss, heapUsed, external } as a JSON line.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createWriteStream, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { jsonLineLog } from "../../relay/app/log.ts";
import {
  describeNetwork,
  initializeNetwork,
  type NetworkSecrets,
} from "../../relay/app/networks.ts";
import { startRelayServer } from "../../relay/node/server.ts";
import { formatIPv6 } from "../../shared/net/ip.ts";
import {
  networkPrefix,
  randomNodeAddress,
  virtualNetworkPrefix,
} from "../../shared/siderolink/addressing.ts";

const [dataDir, network, seedText] = process.argv.slice(2);
if (!dataDir || !network) {
  process.stderr.write("usage: node-relay.ts DATA_DIR NETWORK [SEED_PEERS]\n");
  process.exit(2);
}
const seedPeers = Number(seedText ?? 0);

const logFile = createWriteStream(join(dataDir, "relay.log"));
const unlimited = { burst: 1e9, perSecond: 1e9 };
// A variable, not a literal: relay builds without the option accept (and ignore) it.
const options = {
  host: "127.0.0.1",
  port: 0,
  dataDir,
  // The hub's per-node token bucket too: the forwarding benchmark measures the switch itself.
  hubLimits: { nodeBurst: 1e9, nodeDatagramsPerSecond: 1e9 },
  limits: {
    provisionPerClient: unlimited,
    provisionPerNetwork: unlimited,
    maxPeersPerNetwork: 1e9,
    maxTunnels: 1e9,
  },
  // Every load generator connects from 127.0.0.1: one address holding thousands of tunnels.
  connections: { maxConnections: 1e9, maxConnectionsPerAddress: 1e9 },
  // Standard output carries this script's JSON answers only. The relay still formats and writes
  // every log line, as in production, but to a file in DATA_DIR.
  log: jsonLineLog((line) => logFile.write(line)),
};
const server = await startRelayServer(options);
const runtime = await server.directory.runtime(network);
// The relay keeps only hashes of secrets: the bench keeps the clear ones for its restarts.
const secretsFile = join(dataDir, `${network}.bench-secrets.json`);
let record = await runtime.store.network();
let secrets: NetworkSecrets;
if (record) {
  secrets = JSON.parse(readFileSync(secretsFile, "utf8")) as NetworkSecrets;
} else {
  const created = await initializeNetwork(runtime);
  record = created.network;
  secrets = {
    adminSecret: created.adminSecret,
    uplinkSecret: created.uplinkSecret,
    joinToken: created.joinToken,
  };
  writeFileSync(secretsFile, JSON.stringify(secrets), { mode: 0o600 });
}
const prefix = networkPrefix(record.installationId);
const virtualAddresses: string[] = [];
const now = Date.now();
for (let i = 0; i < seedPeers; i++) {
  const virtualAddress = formatIPv6(randomNodeAddress(virtualNetworkPrefix()));
  await runtime.store.savePeer({
    nodeUuid: randomUUID(),
    uniqueToken: "",
    joinTokenId: null,
    rebindAllowed: false,
    publicKey: randomBytes(32).toString("base64"),
    address: formatIPv6(randomNodeAddress(prefix)),
    virtualAddress,
    talosVersion: "",
    firstSeen: now,
    lastSeen: now,
    rxBytes: 0,
    txBytes: 0,
    rxPackets: 0,
    txPackets: 0,
  });
  virtualAddresses.push(virtualAddress);
}
const summary = await describeNetwork(
  await server.directory.runtime(network),
  server.nodeBaseUrl,
  secrets,
);
process.stdout.write(
  `${JSON.stringify({
    url: server.url,
    network,
    adminSecret: summary.adminSecret,
    uplinkSecret: summary.uplinkSecret,
    joinToken: summary.joinToken,
    virtualAddresses,
  })}\n`,
);

const gc = (globalThis as { gc?: () => void }).gc;
process.on("SIGUSR2", () => {
  gc?.();
  const usage = process.memoryUsage();
  process.stdout.write(
    `${JSON.stringify({ rss: usage.rss, heapUsed: usage.heapUsed, external: usage.external })}\n`,
  );
});
process.once("SIGTERM", () => {
  void server.close().then(() => process.exit(0));
});
