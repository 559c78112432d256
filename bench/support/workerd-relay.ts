/**
 * The relay Worker in local workerd (Miniflare), run as its own process inside a lab namespace
 * so that sidecars in other namespaces reach it, listening on every address:
 *
 *   node workerd-relay.ts PORT NETWORK
 *
 * Creates NETWORK through the admin API and prints one JSON line in the shape of the sidecar
 * tests' relay fixture ({ url, apiUrl, joinToken, adminSecret, uplinkSecret, serverAddress }). Runs until
 * SIGTERM. Configuration mirrors test/worker/support/miniflare.ts and wrangler.toml.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertV4MiniflareOptions, Log, LogLevel, Miniflare } from "miniflare";
import { bundlePath, bundleWorker, repositoryRoot } from "../../test/worker/support/bundle.ts";
import { LIFTED_NODE_LIMIT_VARS } from "./worker-limits.ts";

const [portText, network] = process.argv.slice(2);
if (!portText || !network) {
  process.stderr.write("usage: workerd-relay.ts PORT NETWORK\n");
  process.exit(2);
}
const workerName = "siderolink-relay";
const toml = await readFile(`${repositoryRoot}wrangler.toml`, "utf8");
const date = /^compatibility_date\s*=\s*"([0-9-]+)"/m.exec(toml)?.[1];
if (!date) throw new Error("wrangler.toml has no compatibility_date line");
const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml);
const persist = await mkdtemp(join(tmpdir(), "bench-workerd-"));
const operatorToken = randomBytes(24).toString("base64url");
const miniflare = new Miniflare(
  convertV4MiniflareOptions({
    name: workerName,
    modules: [{ type: "ESModule", path: bundlePath, contents: await bundleWorker() }],
    compatibilityDate: date,
    compatibilityFlags: flags ? [...flags[1].matchAll(/"([^"]+)"/g)].map((m) => m[1]) : [],
    durableObjects: {
      NETWORK: { className: "NetworkObject", useSQLite: true },
      DIRECTORY: { className: "DirectoryObject", useSQLite: true },
    },
    bindings: { RELAY_OPERATOR_TOKEN: operatorToken, ...LIFTED_NODE_LIMIT_VARS },
    resourcePersistencePath: persist,
    host: "127.0.0.1",
    port: 0,
    // The Worker's own socket: Miniflare's entry worker would add a hop.
    unsafeDirectSockets: [{ host: "0.0.0.0", port: Number(portText) }],
    log: new Log(LogLevel.WARN),
    cf: false,
  }),
);
await miniflare.ready;
const url = await miniflare.unsafeGetDirectURL(workerName);
const response = await fetch(new URL("/v1/networks", url), {
  method: "POST",
  headers: { authorization: `Bearer ${operatorToken}`, "content-type": "application/json" },
  body: JSON.stringify({ name: network }),
});
const summary = (await response.json()) as Record<string, string>;
if (response.status !== 201) {
  throw new Error(
    `creating network ${network}: HTTP ${response.status} ${JSON.stringify(summary)}`,
  );
}
process.stdout.write(
  `${JSON.stringify({
    url: url.href,
    apiUrl: summary.apiUrl,
    joinToken: summary.joinToken,
    adminSecret: summary.adminSecret,
    uplinkSecret: summary.uplinkSecret,
    serverAddress: summary.serverAddress,
    operatorToken,
  })}\n`,
);
process.once("SIGTERM", () => {
  void miniflare
    .dispose()
    .then(() => rm(persist, { recursive: true, force: true }))
    .then(() => process.exit(0));
});
