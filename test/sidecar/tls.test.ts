/**
 * Both roles against a relay that speaks TLS with a private CA: trusted through --ca-file
 * (Connect provisioning and a wss tunnel, gRPC over TLS for the other node), accepted without
 * verification only with --insecure and a warning, and refused otherwise.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ExitCode } from "../../sidecar/exit-codes.ts";
import { requirePrerequisites } from "../netns/netns.ts";
import { makeCertificates, type TestCertificates } from "../support/certificates.ts";
import { runCli } from "./support/cli.ts";
import {
  createOverlayLab,
  EdgeToMgmt,
  EdgeToNode,
  type OverlayLab,
  type RelayInfo,
} from "./support/overlay-lab.ts";

const suffix = String(process.pid % 100000);

describe("sidecar over TLS", { timeout: 180_000 }, () => {
  let overlay: OverlayLab;
  let relay: RelayInfo;
  let certs: TestCertificates;

  before(async () => {
    requirePrerequisites(["openssl"]);
    overlay = await createOverlayLab("slt");
    certs = makeCertificates(overlay.work, [EdgeToMgmt.edge, EdgeToNode.edge]);
    relay = (await overlay.startRelay({ certFile: certs.cert, keyFile: certs.key })).info;
    assert.match(relay.apiUrl, /^https:\/\//);
  });

  after(async () => {
    await overlay?.close();
  });

  it("trusts a private CA given with --ca-file: Connect provisioning, wss tunnel, uplink over TLS", async () => {
    const server = overlay.startServer(
      relay,
      `st${suffix}`,
      ["--wireguard", "userspace", "--ca-file", certs.ca],
      "https",
    );
    await server.waitFor(/"msg":"ready"/, 20_000);
    const joined = overlay.startNode(relay, `nt${suffix}`, [
      "--wireguard",
      "userspace",
      "--ca-file",
      certs.ca,
    ]);
    await joined.waitFor(/"msg":"ready"/, 30_000);
    assert.match(joined.output(), /"provisionProtocol":"connect"/);
    await overlay.pingUntilReply(overlay.node, relay.serverAddress);
    const status = await overlay.status(overlay.node, `nt${suffix}`);
    assert.equal(status.transport.kind, "websocket");
    assert.equal(status.up, true);
    assert.doesNotMatch(joined.output() + server.output(), /verification is OFF/);
  });

  it("--insecure works without the CA and warns; here with gRPC over TLS for Provision and the tunnel", async () => {
    const joined = overlay.startNode(relay, `ni${suffix}`, [
      "--wireguard",
      "userspace",
      "--insecure",
      "--provision-protocol",
      "grpc",
      "--transport",
      "grpc",
    ]);
    await joined.waitFor(/"msg":"ready"/, 30_000);
    assert.match(
      joined.output(),
      /"level":"warn".*TLS certificate verification is OFF \(--insecure\)/,
    );
    await overlay.pingUntilReply(overlay.node, relay.serverAddress);
    const status = await overlay.status(overlay.node, `ni${suffix}`);
    assert.equal(status.transport.kind, "grpc");
    assert.equal(status.up, true);
  });

  it("without the CA the certificate is refused, and the node gives up after --connect-timeout", async () => {
    const result = await runCli(
      [
        "join",
        overlay.nodeApiUrl(relay),
        "--iface",
        `nx${suffix}`,
        "--state",
        join(overlay.work, "state-x"),
        "--run-dir",
        join(overlay.work, "run"),
        "--wireguard",
        "userspace",
        "--connect-timeout",
        "3",
      ],
      { netns: overlay.node.name },
    );
    assert.equal(result.code, ExitCode.RelayUnreachable, result.stderr);
    assert.match(result.stderr, /certificate/i);
  });
});
