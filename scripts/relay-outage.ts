/**
 * `npm run soak:outage`: a node sidecar and a server sidecar (the CLI, userspace WireGuard, in
 * network namespaces; the node's UDP dropped) linked through a Node relay; the relay stops for
 * OUTAGE_SECONDS (default 600) and starts again on the same data dir. Passes when both sidecar
 * processes outlive the outage and the node reaches the server over the overlay again, without
 * a restart. Needs root and test/setup/prerequisites.sh. Prints what it saw along the way.
 */
import assert from "node:assert/strict";
import { createOverlayLab } from "../test/sidecar/support/overlay-lab.ts";

const outageSeconds = Number(process.env.OUTAGE_SECONDS) || 600;
const SAMPLE_MS = 30_000;
const suffix = String(process.pid % 100000);
const serverIface = `so${suffix}`;
const nodeIface = `no${suffix}`;
const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${line}\n`);

const overlay = await createOverlayLab("out");
try {
  let { process: relay, info } = await overlay.startRelay();
  const server = overlay.startServer(info, serverIface, ["--wireguard", "userspace"]);
  await server.waitFor(/"msg":"ready"/, 20_000);
  const node = overlay.startNode(info, nodeIface, [
    "--wireguard",
    "userspace",
    "--transport",
    "websocket",
  ]);
  await node.waitFor(/"msg":"ready"/, 30_000);
  await overlay.pingUntilReply(overlay.node, info.serverAddress);
  const before = await overlay.status(overlay.node, nodeIface);
  log(
    `linked: node ${before.addresses.local}, server ${info.serverAddress}; relay stops for ${outageSeconds} s`,
  );

  await relay.stop();
  const stoppedAt = Date.now();
  while (Date.now() - stoppedAt < outageSeconds * 1000) {
    await new Promise((resolve) =>
      setTimeout(resolve, Math.min(SAMPLE_MS, outageSeconds * 1000 - (Date.now() - stoppedAt))),
    );
    const status = await overlay.status(overlay.node, nodeIface);
    assert.equal(node.child.exitCode, null, "the node sidecar is still running");
    assert.equal(server.child.exitCode, null, "the server sidecar is still running");
    log(
      `t+${Math.round((Date.now() - stoppedAt) / 1000)} s: node transport ${status.transport.state}, connects ${status.transport.connects}, up ${status.up}`,
    );
  }

  ({ process: relay, info } = await overlay.startRelay());
  const restartedAt = Date.now();
  await overlay.pingUntilReply(overlay.node, info.serverAddress, 300);
  const after = await overlay.status(overlay.node, nodeIface);
  const serverStatus = await overlay.status(overlay.mgmt, serverIface);
  assert.equal(after.pid, before.pid, "the same node process, not a restart");
  assert.equal(after.up, true);
  assert.equal(serverStatus.up, true);
  log(
    `recovered ${Math.round((Date.now() - restartedAt) / 1000)} s after the relay returned: node ${after.addresses.local} (before ${before.addresses.local}), transport connects ${after.transport.connects}, server connects ${serverStatus.transport.connects}`,
  );
  const retries = node
    .output()
    .split("\n")
    .filter((l: string) => /retrying|provision/i.test(l)).length;
  log(`node log lines about retrying or provisioning during the outage: ${retries}`);
} finally {
  await overlay.close();
}
