/**
 * The node sidecar keeps its link without a restart: when the operator revokes the node (the
 * relay ends its stream), it provisions again after 5 s and comes back on a new address; when
 * the relay goes away and returns, both roles reconnect by themselves. Metrics on 127.0.0.1
 * report the link. The node reads its API URL from a SideroLinkConfig document here.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LabProcess } from "../netns/netns.ts";
import { eventually } from "../support/eventually.ts";
import { nodeBinary } from "./support/cli.ts";
import { createOverlayLab, type OverlayLab, type RelayInfo } from "./support/overlay-lab.ts";

const suffix = String(process.pid % 100000);
const MetricsPort = 9464;

describe("sidecar recovery", { timeout: 240_000 }, () => {
  let overlay: OverlayLab;
  let relay: RelayInfo;
  let relayProcess: LabProcess;
  const serverIface = `sr${suffix}`;
  const nodeIface = `nr${suffix}`;
  let server: LabProcess;
  let joined: LabProcess;

  before(async () => {
    overlay = await createOverlayLab("slr");
    ({ process: relayProcess, info: relay } = await overlay.startRelay());
    server = overlay.startServer(relay, serverIface, ["--wireguard", "userspace"]);
    await server.waitFor(/"msg":"ready"/, 20_000);
    joined = overlay.startNode(
      relay,
      nodeIface,
      [
        "--wireguard",
        "userspace",
        "--transport",
        "websocket",
        "--metrics-port",
        String(MetricsPort),
      ],
      true,
    );
    await joined.waitFor(/"msg":"ready"/, 30_000);
    await overlay.pingUntilReply(overlay.node, relay.serverAddress);
  });

  after(async () => {
    await overlay?.close();
  });

  it("serves Prometheus metrics on 127.0.0.1 that show the link up", async () => {
    const { stdout } = await overlay.node.run(nodeBinary, [
      "-e",
      `fetch("http://127.0.0.1:${MetricsPort}/metrics").then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ]);
    assert.match(stdout, /^siderolink_sidecar_up\{role="node"\} 1$/m);
    assert.match(
      stdout,
      /^siderolink_sidecar_transport_connected\{role="node",kind="websocket"\} 1$/m,
    );
    assert.match(
      stdout,
      /^siderolink_sidecar_peer_bytes_total\{peer="[^"]+",direction="rx"\} [1-9]\d*$/m,
    );
    const listeners = (await overlay.node.run("ss", ["-tlnH"])).stdout;
    assert.match(listeners, new RegExp(`127\\.0\\.0\\.1:${MetricsPort}\\b`));
    assert.doesNotMatch(
      listeners,
      new RegExp(`(\\*|0\\.0\\.0\\.0|\\[::\\]):${MetricsPort}\\b`),
      "loopback only",
    );
  });

  it("stays out once the operator revokes the node, then provisions again when admitted and carries traffic on the new address", async () => {
    const before = await overlay.status(overlay.node, nodeIface);
    relayProcess.child.kill("SIGUSR2");
    await relayProcess.waitFor(/^revoked 1$/, 5_000);
    await joined.waitFor(/"msg":"the relay ended the tunnel stream; provisioning again"/, 10_000);
    // Revoked: Provision is refused, and the node keeps asking (as Talos does) rather than exit.
    await joined.waitFor(
      /failed; retrying".*the relay refused this node: .*revoked by the operator/,
      15_000,
    );
    assert.equal(joined.child.exitCode, null, "the sidecar is still running");
    relayProcess.child.kill("SIGUSR1");
    await relayProcess.waitFor(/^admitted 1$/, 5_000);
    const after = await eventually(
      "a new address",
      async () => {
        const status = await overlay.status(overlay.node, nodeIface);
        return status.addresses.local !== before.addresses.local &&
          status.transport.state === "connected"
          ? status
          : undefined;
      },
      30_000,
      250,
    );
    assert.equal(after.pid, before.pid, "the same process, not a restart");
    const address = after.addresses.local!.split("/")[0];
    await overlay.pingUntilReply(overlay.node, relay.serverAddress);
    await overlay.pingUntilReply(overlay.mgmt, address);
    const serverStatus = await overlay.status(overlay.mgmt, serverIface);
    assert.deepEqual(
      serverStatus.peers.map((peer) => peer.address),
      [address],
      "the server dropped the revoked peer and has the new one",
    );
  });

  it("survives the relay going away and coming back, without restarting either sidecar", async () => {
    const before = await overlay.status(overlay.node, nodeIface);
    const retries = () => joined.output().split("tunnel stream down; retrying").length - 1;
    const retriesBefore = retries();
    await relayProcess.stop();
    await eventually(
      "the node to notice",
      async () => {
        const status = await overlay.status(overlay.node, nodeIface);
        return status.transport.state !== "connected" ? status : undefined;
      },
      60_000,
      250,
    );
    // The relay stays away until the node has retried against it and failed: the warning for
    // the lost stream, then one for the attempt that found nobody.
    await eventually(
      "a failed retry while the relay is away",
      () => retries() >= retriesBefore + 2,
      30_000,
      250,
    );
    ({ process: relayProcess } = await overlay.startRelay());
    await overlay.pingUntilReply(overlay.node, relay.serverAddress, 40);
    const after = await overlay.status(overlay.node, nodeIface);
    assert.equal(after.pid, before.pid);
    assert.equal(
      after.addresses.local,
      before.addresses.local,
      "the relay kept the node: no new address",
    );
    assert.equal(after.transport.connects, before.transport.connects + 1);
    assert.equal(after.up, true);
    const serverStatus = await overlay.status(overlay.mgmt, serverIface);
    assert.equal(serverStatus.up, true);
    assert.equal(serverStatus.transport.connects, 2);
  });
});
