/**
 * The sidecar end to end, from its CLI, in network namespaces:
 *
 *   node (UDP dropped) --veth-- edge (Node relay) --veth-- mgmt (server sidecar)
 *
 * The node reaches the relay over TCP only; WireGuard rides the tunnel, the server's uplink
 * carries it to the management host. Pings and TCP transfers cross the overlay both ways, and
 * the checks come from ping, the transfer fixture's SHA-256 and the kernel's own view of
 * interfaces, routes and sockets.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { Netns } from "../netns/netns.ts";
import { nodeBinary as node } from "./support/cli.ts";
import { createOverlayLab, type OverlayLab, type RelayInfo } from "./support/overlay-lab.ts";

const transfer = fileURLToPath(new URL("../interop/fixtures/tcp-transfer.ts", import.meta.url));
const suffix = String(process.pid % 100000);

describe("sidecar overlay through the Node relay", { timeout: 300_000 }, () => {
  let overlayLab: OverlayLab;
  let relay: RelayInfo;
  let nodeNs: Netns;
  let mgmt: Netns;

  before(async () => {
    overlayLab = await createOverlayLab("slo");
    ({ node: nodeNs, mgmt } = overlayLab);
    relay = (await overlayLab.startRelay()).info;
  });

  after(async () => {
    await overlayLab?.close();
  });

  const transferBothWays = async (
    a: Netns,
    aAddress: string,
    b: Netns,
    bAddress: string,
  ): Promise<void> => {
    for (const [from, to, toAddress, port] of [
      [a, b, bAddress, 5201],
      [b, a, aAddress, 5202],
    ] as const) {
      const receiver = to.spawn(node, [transfer, "receive", toAddress, String(port)]);
      await receiver.waitFor(/^listening/, 10_000);
      const { stdout } = await from.run(
        node,
        [transfer, "send", toAddress, String(port), String(4 * 1024 * 1024)],
        {
          timeoutMs: 60_000,
        },
      );
      const sent = /sent (\d+) sha256 ([0-9a-f]+)/.exec(stdout);
      const received = /received (\d+) sha256 ([0-9a-f]+)/.exec(
        await receiver.waitFor(/^received/, 60_000),
      );
      assert.ok(sent && received, `transfer output: ${stdout}`);
      assert.equal(received[1], String(4 * 1024 * 1024));
      assert.equal(received[2], sent[2], "SHA-256 of the bytes received matches the bytes sent");
    }
  };

  /**
   * Starts a server and a node sidecar with `options`, checks ping6 and TCP both ways and the
   * status reports, then SIGTERMs both and checks that nothing is left behind.
   */
  const overlay = async (
    name: string,
    backend: "userspace" | "kernel",
    transport: "grpc" | "websocket",
  ) => {
    const serverIface = `s${name}${suffix}`;
    const nodeIface = `n${name}${suffix}`;
    const backendArgs =
      backend === "kernel"
        ? ["--wireguard", "kernel", "--wireguard-go", "wireguard-go"]
        : ["--wireguard", "userspace"];
    const server = overlayLab.startServer(relay, serverIface, backendArgs);
    await server.waitFor(/"msg":"ready"/, 20_000);
    const joined = overlayLab.startNode(relay, nodeIface, [
      ...backendArgs,
      "--transport",
      transport,
    ]);
    await joined.waitFor(/"msg":"ready"/, 30_000);

    const first = await overlayLab.status(nodeNs, nodeIface);
    const nodeAddress = first.addresses.local!.split("/")[0];
    assert.equal(first.addresses.server, relay.serverAddress);
    await overlayLab.pingUntilReply(nodeNs, relay.serverAddress);
    await overlayLab.pingUntilReply(mgmt, nodeAddress);
    await transferBothWays(nodeNs, nodeAddress, mgmt, relay.serverAddress);

    const nodeStatus = await overlayLab.status(nodeNs, nodeIface);
    assert.equal(nodeStatus.role, "node");
    assert.equal(nodeStatus.backend, backend);
    assert.equal(nodeStatus.up, true);
    assert.equal(nodeStatus.exitCode, 0, "status exits 0 while the link is up");
    assert.equal(nodeStatus.transport.kind, transport);
    assert.equal(nodeStatus.transport.state, "connected");
    assert.equal(nodeStatus.peers.length, 1);
    const age = nodeStatus.peers[0].lastHandshakeAgeSeconds;
    assert.ok(age !== null && age < 60, `recent handshake, got age ${age}`);
    assert.ok(
      nodeStatus.peers[0].rxBytes > 4 * 1024 * 1024,
      "the transfer's bytes went through WireGuard",
    );
    const serverStatus = await overlayLab.status(mgmt, serverIface);
    assert.equal(serverStatus.role, "server");
    assert.equal(serverStatus.up, true);
    const serverPeer = serverStatus.peers.find((peer) => peer.lastHandshakeAgeSeconds !== null);
    assert.ok(
      serverPeer && serverPeer.txBytes > 4 * 1024 * 1024,
      "the server sent the transfer to the node",
    );

    joined.child.kill("SIGTERM");
    server.child.kill("SIGTERM");
    assert.deepEqual(await joined.exited, { code: 0, signal: null }, joined.output());
    assert.deepEqual(await server.exited, { code: 0, signal: null }, server.output());
    for (const [ns, iface] of [
      [nodeNs, nodeIface],
      [mgmt, serverIface],
    ] as const) {
      const links = (await ns.run("ip", ["-o", "link", "show"])).stdout;
      assert.doesNotMatch(links, new RegExp(`: ${iface}[:@]`), `interface ${iface} removed`);
      const routes = (await ns.run("ip", ["-6", "route", "show", "table", "all"])).stdout;
      assert.doesNotMatch(routes, new RegExp(`dev ${iface}\\b`), `routes via ${iface} removed`);
      const sockets = (await ns.run("ss", ["-uanp"])).stdout;
      assert.doesNotMatch(sockets, /wireguard-go/, "no wireguard-go UDP socket left");
      assert.equal(
        existsSync(join(overlayLab.work, "run", `${iface}.sock`)),
        false,
        "status socket removed",
      );
      assert.equal(
        existsSync(`/var/run/wireguard/${iface}.sock`),
        false,
        "wg configuration socket removed",
      );
    }
    const after = await overlayLab.status(nodeNs, nodeIface);
    assert.equal(after.exitCode, 1, "status exits 1 when no sidecar runs");
  };

  it("userspace WireGuard over the gRPC CreateStream tunnel: ping6 and TCP both ways, clean SIGTERM", async () => {
    await overlay("g", "userspace", "grpc");
  });

  it("userspace WireGuard over the WebSocket tunnel: ping6 and TCP both ways, clean SIGTERM", async () => {
    await overlay("w", "userspace", "websocket");
  });

  it("kernel backend (wireguard-go interfaces bridged over loopback UDP) on both roles", async () => {
    await overlay("k", "kernel", "websocket");
  });
});
