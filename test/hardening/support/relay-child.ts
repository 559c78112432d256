/**
 * A Node relay in its own process, so a test can measure it from outside (/proc/<pid>/fd, heap
 * after GC) and read everything it logs. Run with --expose-gc and one JSON argument:
 *   { dataDir, port, network?, limits?, hubLimits?, sweepIntervalMs?, operatorToken? }
 * It prints one JSON line {url, port, network?} when listening, then answers IPC requests:
 *   {id, type: "stats"}  -> {id, heapUsed, rss, hubs: {network: {nodes, uplinks, metrics}}}
 *   {id, type: "close"}  -> closes the relay, replies {id}, exits.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  describeNetwork,
  initializeNetwork,
  type NetworkSecrets,
} from "../../../relay/app/networks.ts";
import { type RelayServerOptions, startRelayServer } from "../../../relay/node/server.ts";

interface ChildOptions extends Partial<RelayServerOptions> {
  readonly dataDir: string;
  readonly port: number;
  /** Created when it does not exist yet; its summary is printed with the URL. */
  readonly network?: string;
}

const options = JSON.parse(process.argv[2] ?? "{}") as ChildOptions;
const server = await startRelayServer({ host: "127.0.0.1", ...options });
let summary: unknown;
if (options.network) {
  const runtime = await server.directory.runtime(options.network);
  // The relay keeps only hashes of secrets: the child keeps the clear ones for its restarts.
  const secretsFile = join(options.dataDir, `${options.network}.child-secrets.json`);
  let secrets: NetworkSecrets;
  if ((await runtime.store.network()) === undefined) {
    const { adminSecret, uplinkSecret, joinToken } = await initializeNetwork(runtime);
    secrets = { adminSecret, uplinkSecret, joinToken };
    writeFileSync(secretsFile, JSON.stringify(secrets), { mode: 0o600 });
  } else {
    secrets = JSON.parse(readFileSync(secretsFile, "utf8")) as NetworkSecrets;
  }
  summary = await describeNetwork(
    await server.directory.runtime(options.network),
    server.nodeBaseUrl,
    secrets,
  );
}
process.stdout.write(
  `${JSON.stringify({ url: server.url, port: server.port, network: summary })}\n`,
);

const gc = (globalThis as { gc?: () => void }).gc;

process.on("message", async (message: { id: number; type: string }) => {
  if (message.type === "stats") {
    // Twice: the first pass frees what finalizers release for the second.
    gc?.();
    gc?.();
    const hubs: Record<string, unknown> = {};
    for (const runtime of server.directory.live()) {
      hubs[runtime.name] = {
        nodes: runtime.hub.nodeCount,
        uplinks: runtime.hub.uplinkCount,
        metrics: runtime.hub.metrics,
      };
    }
    const memory = process.memoryUsage();
    process.send?.({ id: message.id, heapUsed: memory.heapUsed, rss: memory.rss, hubs });
  } else if (message.type === "close") {
    await server.close();
    process.send?.({ id: message.id });
    process.disconnect();
  }
});
