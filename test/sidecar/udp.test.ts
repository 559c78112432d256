/**
 * Without a tunnel: a SideroLink server that answers Provision with no grpc_peer_addr_port
 * gets plain UDP WireGuard to its preferred endpoint, the first of server_endpoint once the
 * wire order (first and last swapped) is undone. The server here is wireguard-go behind a
 * small Provision fixture; the second endpoint it offers leads nowhere.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createLab, type Lab, type Netns, requirePrerequisites, run } from "../netns/netns.ts";
import { nodeBinary, runCli } from "./support/cli.ts";

const fixture = fileURLToPath(new URL("./fixtures/udp-siderolink-server.ts", import.meta.url));
const cli = fileURLToPath(new URL("../../sidecar/cli.ts", import.meta.url));
const suffix = String(process.pid % 100000);

/** Pings until a reply comes back: the first one waits for the handshake. */
async function pingUntilReply(ns: Netns, address: string): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      await ns.run("ping", ["-6", "-c", "1", "-W", "2", address]);
      return;
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

describe("sidecar without a tunnel (UDP to the server endpoint)", { timeout: 120_000 }, () => {
  let lab: Lab;
  let server: Netns;
  let nodeNs: Netns;
  let work: string;
  const serverIface = `wgu${suffix}`;

  before(async () => {
    requirePrerequisites(["ip", "ping", "wg", "wireguard-go"]);
    work = mkdtempSync(join(tmpdir(), "sidecar-udp-"));
    lab = createLab("slu");
    server = await lab.namespace("srv");
    nodeNs = await lab.namespace("node");
    await lab.link(server, "10.95.0.1/24", nodeNs, "10.95.0.2/24");
    await server.run("wireguard-go", [serverIface]);
    const key = join(work, "server.key");
    writeFileSync(key, `${(await run("wg", ["genkey"])).stdout.trim()}\n`, { mode: 0o600 });
    await server.run("wg", ["set", serverIface, "private-key", key, "listen-port", "51820"]);
    await server.run("ip", ["-6", "address", "add", "fd05::1/64", "dev", serverIface, "nodad"]);
    await server.run("ip", ["link", "set", serverIface, "up"]);
    const provision = server.spawn(nodeBinary, [
      fixture,
      serverIface,
      "10.95.0.1",
      "50051",
      "51820",
      "10.95.0.9:51820",
    ]);
    await provision.waitFor(/^ready$/, 15_000);
  });

  after(async () => {
    // Deleting the interface ends wireguard-go, which otherwise keeps its namespace alive.
    await server?.run("ip", ["link", "del", serverIface]).catch(() => undefined);
    await lab?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  for (const backend of ["userspace", "kernel"] as const) {
    it(`${backend} WireGuard reaches the preferred endpoint over UDP`, async () => {
      const iface = `nu${backend[0]}${suffix}`;
      const extra = backend === "kernel" ? ["--wireguard-go", "wireguard-go"] : [];
      const joined = nodeNs.spawn(nodeBinary, [
        cli,
        "join",
        "grpc://10.95.0.1:50051?jointoken=udp-token",
        "--iface",
        iface,
        "--wireguard",
        backend,
        ...extra,
        "--state",
        join(work, `state-${iface}`),
        "--run-dir",
        join(work, "run"),
        "--node-uuid",
        "8c9d0e1f-2a3b-4c5d-8e6f-7a8b9c0d1e2f",
      ]);
      await joined.waitFor(/"msg":"ready"/, 20_000);
      await pingUntilReply(nodeNs, "fd05::1");
      const status = await runCli(
        ["status", "--json", "--iface", iface, "--run-dir", join(work, "run")],
        {
          netns: nodeNs.name,
        },
      );
      assert.equal(status.code, 0, status.stderr);
      const report = JSON.parse(status.stdout);
      assert.equal(report.transport.kind, "udp");
      assert.equal(
        report.peers[0].endpoint,
        "10.95.0.1:51820",
        "the preferred endpoint, not the dead one",
      );
      const dump = (await server.run("wg", ["show", serverIface, "dump"])).stdout;
      assert.match(dump, /\t10\.95\.0\.2:\d+\t/, "the server saw the node over UDP");
      joined.child.kill("SIGTERM");
      assert.deepEqual(await joined.exited, { code: 0, signal: null }, joined.output());
      const links = (await nodeNs.run("ip", ["-o", "link", "show"])).stdout;
      assert.doesNotMatch(links, new RegExp(`: ${iface}[:@]`));
    });
  }
});
