/**
 * Machines behind real proxies from Debian's packages, each the machine's only way to the relay
 * (the Node relay over HTTPS, in the edge namespace):
 *
 * - node-a reaches it only through nginx as a TLS reverse proxy with the stock `proxy_pass`
 *   (test/e2e/fixtures/nginx-reverse-proxy.conf): no Upgrade passes, so `--transport auto` must
 *   fall back to the HTTP-only tunnel, and carry a ping and 64 MiB intact over it.
 * - node-b reaches it only through tinyproxy (test/e2e/fixtures/tinyproxy.conf), named by
 *   HTTPS_PROXY with a Basic credential: the node joins and carries traffic, a wrong credential is
 *   refused with the proxy's 407, and when the proxy stops and starts again the link comes back.
 *
 * nginx and tinyproxy run inside the edge namespace with configurations that name only the
 * namespaces' addresses, in the foreground, as processes of this test.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { LabProcess, Netns } from "../netns/netns.ts";
import { requirePrerequisites } from "../netns/netns.ts";
import { cliPath, nodeBinary, runCli } from "../sidecar/support/cli.ts";
import { eventually } from "../support/eventually.ts";
import { createTopology, Links, nodeUuid, type Relay, type Topology } from "./support/topology.ts";
import { MiB, pingUntilReply, transfer } from "./support/traffic.ts";

const suffix = String(process.pid % 100000);
const NGINX_PORT = 8443;
const PROXY_PORT = 8888;
const PROXY_USER = "siderolink";
const PROXY_PASSWORD = "s3cret-proxy";
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

/** Fills a config template's @NAME@ placeholders; a placeholder left over is an error. */
function renderConfig(template: string, values: Record<string, string>, out: string): string {
  let text = readFileSync(fixture(template), "utf8");
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`@${name}@`, value);
  const left = /@[A-Z_]+@/.exec(text);
  if (left) throw new Error(`${template}: no value for ${left[0]}`);
  writeFileSync(out, text);
  return out;
}

/** Drops every TCP connection from `ns` to the relay's own port: the proxy is the only way. */
async function blockDirectRelay(ns: Netns, port: number): Promise<void> {
  await ns.run("sh", [
    "-c",
    `nft add table inet onlyproxy && nft add chain inet onlyproxy out '{ type filter hook output priority 0; policy accept; }' && nft add rule inet onlyproxy out tcp dport ${port} reject with tcp reset`,
  ]);
}

describe("nodes whose only way to the relay is a proxy", { timeout: 600_000 }, () => {
  let topology: Topology;
  let relay: Relay;
  let server: LabProcess;
  let tinyproxy: LabProcess;
  let tinyproxyConfig: string;
  const serverIface = `sp${suffix}`;
  const ifaces = { "node-a": `pa${suffix}`, "node-b": `pb${suffix}` };

  const startTinyproxy = (): LabProcess =>
    topology.edge.spawn("tinyproxy", ["-d", "-c", tinyproxyConfig]);

  before(async () => {
    requirePrerequisites(["nginx", "tinyproxy", "nft"]);
    topology = await createTopology(`px${suffix}`);
    relay = await topology.startRelay("node", { tls: true });
    server = topology.startServer(relay, serverIface);
    await server.waitFor(/peers reconciled/, 60_000);
    const relayPort = new URL(relay.serverUrl).port;
    for (const name of ["node-a", "node-b"] as const)
      await blockDirectRelay(topology.nodes[name], Number(relayPort));

    const nginxWork = join(topology.work, "nginx");
    mkdirSync(nginxWork);
    const nginxConfig = renderConfig(
      "nginx-reverse-proxy.conf",
      {
        WORK: nginxWork,
        LISTEN: `${Links["node-a"].edge}:${NGINX_PORT}`,
        CERT: topology.certificates.cert,
        KEY: topology.certificates.key,
        UPSTREAM: `https://127.0.0.1:${relayPort}`,
      },
      join(nginxWork, "nginx.conf"),
    );
    const nginx = topology.edge.spawn("nginx", ["-c", nginxConfig, "-p", nginxWork]);
    await eventually(
      "nginx to listen",
      async () => {
        await topology.edge.run("sh", [
          "-c",
          `ss -ltn | grep -q '${Links["node-a"].edge}:${NGINX_PORT}'`,
        ]);
        return true;
      },
      10_000,
      200,
    );
    assert.equal(nginx.child.exitCode, null, nginx.output());

    tinyproxyConfig = renderConfig(
      "tinyproxy.conf",
      {
        LISTEN: Links["node-b"].edge,
        PORT: String(PROXY_PORT),
        ALLOW: `${Links["node-b"].host}/32`,
        CONNECT_PORT: relayPort,
        USER: PROXY_USER,
        PASSWORD: PROXY_PASSWORD,
      },
      join(topology.work, "tinyproxy.conf"),
    );
    tinyproxy = startTinyproxy();
    await eventually(
      "tinyproxy to listen",
      async () => {
        await topology.edge.run("sh", ["-c", `ss -ltn | grep -q ':${PROXY_PORT}'`]);
        return true;
      },
      10_000,
      200,
    );
  });

  after(async () => {
    await topology?.close();
  });

  /** Waits for the node's `status --json` to say its stream is connected; returns the status. */
  const connected = (node: "node-a" | "node-b") =>
    eventually(
      `${node}'s stream to connect`,
      async () => {
        const status = await topology.status(ifaces[node]).catch(() => undefined);
        return status?.transport.state === "connected" ? status : undefined;
      },
      120_000,
      500,
    );

  const joinArgs = (node: "node-a" | "node-b", apiUrl: string): string[] => {
    const args = topology.joinArgs(relay, node, ifaces[node], {
      backend: "userspace",
      nodeUuid: nodeUuid(),
      transport: "auto",
    });
    args[1] = apiUrl;
    return [cliPath, ...args];
  };

  it("behind nginx with its default proxy_pass, auto falls back to the HTTP-only tunnel, pings the server and moves 64 MiB intact", async () => {
    const apiUrl = new URL(relay.apiUrl("node-a"));
    apiUrl.host = `${Links["node-a"].edge}:${NGINX_PORT}`;
    const node = topology.nodes["node-a"].spawn(nodeBinary, joinArgs("node-a", apiUrl.toString()));
    const status = await eventually(
      "node-a on the HTTP-only tunnel",
      async () => {
        const current = await topology.status(ifaces["node-a"]).catch(() => undefined);
        return current?.transport.kind === "http" && current.transport.state === "connected"
          ? current
          : undefined;
      },
      90_000,
      500,
    );
    assert.equal(status.transport.choice, "auto");
    assert.match(status.transport.reason ?? "", /^http: websocket failed \(HTTP 426/);
    assert.match(node.output(), /"msg":"transport changed".*"to":"http"/);
    await pingUntilReply(topology.nodes["node-a"], relay.info.serverAddress);
    const result = await transfer(
      topology.nodes["node-a"],
      topology.mgmt,
      relay.info.serverAddress,
      5201,
      64 * MiB,
    );
    assert.equal(result.bytesReceived, 64 * MiB);
    assert.equal(result.receivedSha256, result.sentSha256, "the bytes arrived intact");
  });

  it("through tinyproxy named by HTTPS_PROXY, a wrong proxy password is refused by the proxy, and the error says to check the credential", async () => {
    const proxy = `http://${PROXY_USER}:wrong@${Links["node-b"].edge}:${PROXY_PORT}`;
    const result = await runCli(
      [...joinArgs("node-b", relay.apiUrl("node-b")).slice(1), "--connect-timeout", "3"],
      { netns: topology.nodes["node-b"].name, env: { HTTPS_PROXY: proxy } },
    );
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /CONNECT 10\.95\.0\.1:\d+ refused: HTTP\/1\.[01] 40[17] .*check the user and password/,
    );
  });

  it("through tinyproxy named by HTTPS_PROXY with its credential, the node joins, carries traffic, and comes back after the proxy restarts", async () => {
    const proxy = `http://${PROXY_USER}:${PROXY_PASSWORD}@${Links["node-b"].edge}:${PROXY_PORT}`;
    const ns = topology.nodes["node-b"];
    ns.spawn(nodeBinary, joinArgs("node-b", relay.apiUrl("node-b")), {
      env: { HTTPS_PROXY: proxy },
    });
    await connected("node-b");
    await pingUntilReply(ns, relay.info.serverAddress, 60);
    const first = await topology.status(ifaces["node-b"]);
    assert.equal(first.transport.kind, "websocket", "a forward proxy passes the WebSocket");
    const before = await transfer(ns, topology.mgmt, relay.info.serverAddress, 5202, 4 * MiB);
    assert.equal(before.receivedSha256, before.sentSha256);

    await tinyproxy.stop();
    await eventually(
      "node-b to lose its stream",
      async () => (await topology.status(ifaces["node-b"])).transport.state !== "connected",
      60_000,
      500,
    );
    tinyproxy = startTinyproxy();
    await eventually(
      "node-b to reconnect through the restarted proxy",
      async () => (await topology.status(ifaces["node-b"])).transport.state === "connected",
      120_000,
      500,
    );
    await connected("node-b");
    await pingUntilReply(ns, relay.info.serverAddress, 60);
    const after = await transfer(ns, topology.mgmt, relay.info.serverAddress, 5203, 4 * MiB);
    assert.equal(after.receivedSha256, after.sentSha256);
  });
});
