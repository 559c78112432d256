/**
 * Machines behind real proxies from Debian's packages, each the machine's only way to the relay
 * (the Node relay over HTTPS, in the edge namespace):
 *
 * - The management server (mgmt) and node-a reach it only through nginx as a TLS reverse proxy
 *   with the stock `proxy_pass` (test/e2e/fixtures/nginx-reverse-proxy.conf): no Upgrade passes,
 *   so `serve`'s default `--transport auto` must fall back to the HTTP-only tunnel for the
 *   uplink, and node-a's `--transport auto` too; node-a then carries a ping and 64 MiB intact.
 * - node-b reaches it only through tinyproxy (test/e2e/fixtures/tinyproxy.conf), named by
 *   HTTPS_PROXY with a Basic credential: the node joins and carries traffic, a wrong credential is
 *   refused with the proxy's 407, and when the proxy stops and starts again the link comes back.
 *   Then, one after another, with the same proxy: the gRPC transport (CONNECT, then TLS with h2
 *   inside), the HTTP-only tunnel, and tinyproxy as an https:// proxy behind nginx's stream
 *   module (test/e2e/fixtures/nginx-tls-forward-proxy.conf: TLS to the proxy, CONNECT inside).
 *
 * Every node case talks to the server on its HTTP-only uplink. nginx and tinyproxy run inside the
 * edge namespace with configurations that name only the namespaces' addresses, in the
 * foreground, as processes of this test.
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
import {
  createTopology,
  Links,
  type NodeOptions,
  nodeUuid,
  type Relay,
  type Topology,
} from "./support/topology.ts";
import { MiB, pingUntilReply, transfer } from "./support/traffic.ts";

const suffix = String(process.pid % 100000);
const NGINX_PORT = 8443;
const PROXY_PORT = 8888;
/** The TLS front of tinyproxy: the https:// proxy. */
const TLS_PROXY_PORT = 8889;
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

/** Waits until something in the edge namespace listens on `address:port`. */
async function listening(topology: Topology, what: string, address: string, port: number) {
  await eventually(
    `${what} to listen`,
    async () => {
      await topology.edge.run("sh", ["-c", `ss -ltn | grep -q '${address}:${port} '`]);
      return true;
    },
    10_000,
    200,
  );
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
  const proxyUrl = (scheme: "http" | "https", port: number) =>
    `${scheme}://${PROXY_USER}:${PROXY_PASSWORD}@${Links["node-b"].edge}:${port}`;

  const startTinyproxy = (): LabProcess =>
    topology.edge.spawn("tinyproxy", ["-d", "-c", tinyproxyConfig]);

  before(async () => {
    requirePrerequisites(["nginx", "tinyproxy", "nft"]);
    topology = await createTopology(`px${suffix}`);
    relay = await topology.startRelay("node", { tls: true });
    const relayPort = new URL(relay.serverUrl).port;
    for (const ns of [topology.mgmt, topology.nodes["node-a"], topology.nodes["node-b"]])
      await blockDirectRelay(ns, Number(relayPort));

    const nginxWork = join(topology.work, "nginx");
    mkdirSync(nginxWork);
    const nginxConfig = renderConfig(
      "nginx-reverse-proxy.conf",
      {
        WORK: nginxWork,
        LISTEN: `${Links["node-a"].edge}:${NGINX_PORT}`,
        LISTEN_SERVER: `${Links.mgmt.edge}:${NGINX_PORT}`,
        CERT: topology.certificates.cert,
        KEY: topology.certificates.key,
        UPSTREAM: `https://127.0.0.1:${relayPort}`,
      },
      join(nginxWork, "nginx.conf"),
    );
    const nginx = topology.edge.spawn("nginx", ["-c", nginxConfig, "-p", nginxWork]);
    await listening(topology, "nginx", Links.mgmt.edge, NGINX_PORT);
    assert.equal(nginx.child.exitCode, null, nginx.output());
    // The server's only way to the relay is nginx; its transport is serve's default.
    server = topology.startServer(relay, serverIface, {
      extraArgs: ["--relay", `https://${Links.mgmt.edge}:${NGINX_PORT}`],
    });
    await server.waitFor(/peers reconciled/, 60_000);

    tinyproxyConfig = renderConfig(
      "tinyproxy.conf",
      {
        LISTEN: Links["node-b"].edge,
        PORT: String(PROXY_PORT),
        ALLOW: `${Links["node-b"].host}/32`,
        ALLOW_FRONT: `${Links["node-b"].edge}/32`,
        CONNECT_PORT: relayPort,
        USER: PROXY_USER,
        PASSWORD: PROXY_PASSWORD,
      },
      join(topology.work, "tinyproxy.conf"),
    );
    tinyproxy = startTinyproxy();
    await listening(topology, "tinyproxy", Links["node-b"].edge, PROXY_PORT);

    const frontWork = join(topology.work, "nginx-front");
    mkdirSync(frontWork);
    const frontConfig = renderConfig(
      "nginx-tls-forward-proxy.conf",
      {
        WORK: frontWork,
        LISTEN: `${Links["node-b"].edge}:${TLS_PROXY_PORT}`,
        CERT: topology.certificates.cert,
        KEY: topology.certificates.key,
        UPSTREAM: `${Links["node-b"].edge}:${PROXY_PORT}`,
      },
      join(frontWork, "nginx.conf"),
    );
    const front = topology.edge.spawn("nginx", ["-c", frontConfig, "-p", frontWork]);
    await listening(
      topology,
      "nginx's TLS front of tinyproxy",
      Links["node-b"].edge,
      TLS_PROXY_PORT,
    );
    assert.equal(front.child.exitCode, null, front.output());
  });

  after(async () => {
    await topology?.close();
  });

  /** Waits for the `status --json` of `iface` to say its stream is connected; returns the status. */
  const connected = (iface: string) =>
    eventually(
      `${iface}'s stream to connect`,
      async () => {
        const status = await topology.status(iface).catch(() => undefined);
        return status?.transport?.state === "connected" ? status : undefined;
      },
      120_000,
      500,
    );

  const joinArgs = (
    node: "node-a" | "node-b",
    apiUrl: string,
    iface = ifaces[node],
    transport: NodeOptions["transport"] = "auto",
  ): string[] => {
    const args = topology.joinArgs(relay, node, iface, {
      backend: "userspace",
      nodeUuid: nodeUuid(),
      transport,
      state: `state-${iface}`,
    });
    args[1] = apiUrl;
    return [cliPath, ...args];
  };

  it("the server behind nginx with its default proxy_pass and serve's default transport falls back to the HTTP-only uplink, saying why", async () => {
    const status = await connected(serverIface);
    assert.equal(status.transport.kind, "http");
    assert.equal(status.transport.choice, "auto");
    assert.match(status.transport.reason ?? "", /^http: websocket failed \(HTTP 426/);
    assert.match(server.output(), /"msg":"transport changed".*"to":"http"/);
  });

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
    const ns = topology.nodes["node-b"];
    const node = ns.spawn(nodeBinary, joinArgs("node-b", relay.apiUrl("node-b")), {
      env: { HTTPS_PROXY: proxyUrl("http", PROXY_PORT) },
    });
    await connected(ifaces["node-b"]);
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
    await connected(ifaces["node-b"]);
    await pingUntilReply(ns, relay.info.serverAddress, 60);
    const after = await transfer(ns, topology.mgmt, relay.info.serverAddress, 5203, 4 * MiB);
    assert.equal(after.receivedSha256, after.sentSha256);
    await node.stop();
  });

  /**
   * node-b joins with `transport` through `proxy` (HTTPS_PROXY), on an interface of its own,
   * provisions, pings the server and moves 4 MiB intact over that transport; then it stops.
   */
  const carriesThrough = async (
    iface: string,
    proxy: string,
    transport: "grpc" | "http" | "auto",
    expectedKind: "grpc" | "http" | "websocket",
    port: number,
  ): Promise<void> => {
    const ns = topology.nodes["node-b"];
    const node = ns.spawn(
      nodeBinary,
      joinArgs("node-b", relay.apiUrl("node-b"), iface, transport),
      { env: { HTTPS_PROXY: proxy } },
    );
    try {
      const status = await connected(iface);
      assert.equal(status.transport.kind, expectedKind);
      await pingUntilReply(ns, relay.info.serverAddress, 60);
      const result = await transfer(ns, topology.mgmt, relay.info.serverAddress, port, 4 * MiB);
      assert.equal(result.bytesReceived, 4 * MiB);
      assert.equal(result.receivedSha256, result.sentSha256, "the bytes arrived intact");
      assert.match(node.output(), /"msg":"link configured"/, "provisioned");
    } finally {
      await node.stop();
    }
  };

  it("through tinyproxy, the gRPC transport (CONNECT, then TLS with h2 inside) provisions, pings and moves data intact", async () => {
    await carriesThrough(`pg${suffix}`, proxyUrl("http", PROXY_PORT), "grpc", "grpc", 5204);
  });

  it("through tinyproxy, the HTTP-only tunnel provisions, pings and moves data intact", async () => {
    await carriesThrough(`ph${suffix}`, proxyUrl("http", PROXY_PORT), "http", "http", 5205);
  });

  it("through an https:// proxy (TLS to nginx's stream front, CONNECT to tinyproxy inside), the node provisions, pings and moves data intact", async () => {
    await carriesThrough(
      `ps${suffix}`,
      proxyUrl("https", TLS_PROXY_PORT),
      "auto",
      "websocket",
      5206,
    );
  });
});
