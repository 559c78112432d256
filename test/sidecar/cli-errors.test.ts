/**
 * The sidecar's refusals from the command line: each problem ends the process with its own
 * exit status and a message that names the problem, without touching the network, and a
 * refused join token is not retried.
 */
import assert from "node:assert/strict";
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ExitCode } from "../../sidecar/exit-codes.ts";
import { createLab, type Lab, type Netns, requirePrerequisites } from "../netns/netns.ts";
import { nodeBinary, runCli } from "./support/cli.ts";

const relayFixture = fileURLToPath(new URL("./fixtures/relay.ts", import.meta.url));
const RelayPort = 8787;

describe("sidecar CLI errors", { timeout: 120_000 }, () => {
  let lab: Lab;
  let edge: Netns;
  let work: string;
  let relay: { apiUrl: string; joinToken: string; adminSecret: string };

  before(async () => {
    requirePrerequisites(["ip", "unshare", "setpriv"]);
    work = mkdtempSync(join(tmpdir(), "sidecar-errors-"));
    lab = createLab("sle");
    edge = await lab.namespace("edge");
    const process = edge.spawn(nodeBinary, [
      relayFixture,
      "127.0.0.1",
      String(RelayPort),
      join(work, "relay"),
      "edge",
    ]);
    relay = JSON.parse(await process.waitFor(/^\{/, 20_000));
  });

  after(async () => {
    await lab?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const common = (name: string): string[] => [
    "--iface",
    `sle${name}${process.pid % 10000}`,
    "--state",
    join(work, `state-${name}`),
    "--run-dir",
    join(work, "run"),
    "--wireguard",
    "userspace",
  ];

  it("a refused join token exits with its own status, names the token, and is not retried", async () => {
    const url = `grpc://127.0.0.1:${RelayPort}?jointoken=edge.not-the-secret&grpc_tunnel=true`;
    const result = await runCli(["join", url, ...common("t")], { netns: edge.name });
    assert.equal(result.code, ExitCode.BadCredentials, result.stderr);
    assert.match(
      result.stderr,
      /siderolink-sidecar join: the relay refused the join token \(invalid join token\)/,
    );
    assert.doesNotMatch(result.stderr, /retrying/, "no retry after PermissionDenied");
    assert.doesNotMatch(result.stderr, /not-the-secret/, "the token itself is never printed");
  });

  it("a malformed API URL exits with the bad-URL status and names the part that is wrong", async () => {
    const result = await runCli(
      ["join", "grpc://127.0.0.1:99999?jointoken=edge.x", ...common("u")],
      {
        netns: edge.name,
      },
    );
    assert.equal(result.code, ExitCode.BadUrl, result.stderr);
    assert.match(result.stderr, /port "99999" is not a number from 1 to 65535/);
  });

  it("a SideroLinkConfig document with a wrong apiUrl exits with the bad-URL status", async () => {
    const file = join(work, "bad.yaml");
    writeFileSync(file, "apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: ftp://relay:1\n");
    const result = await runCli(["join", "--config", file, ...common("c")], { netns: edge.name });
    assert.equal(result.code, ExitCode.BadUrl, result.stderr);
    assert.match(result.stderr, /apiUrl: scheme must be https:\/\/ or grpc:\/\//);
  });

  it("no API URL at all is a usage error", async () => {
    const result = await runCli(["join", ...common("n")], { netns: edge.name });
    assert.equal(result.code, ExitCode.Usage, result.stderr);
    assert.match(result.stderr, /no API URL: pass API-URL, --config FILE or SIDEROLINK_API/);
  });

  it("an unreachable relay at start is retried with backoff, said so, and given up after --connect-timeout", async () => {
    const url = "grpc://127.0.0.1:9?jointoken=edge.x&grpc_tunnel=true";
    const result = await runCli(["join", url, ...common("r"), "--connect-timeout", "4"], {
      netns: edge.name,
    });
    assert.equal(result.code, ExitCode.RelayUnreachable, result.stderr);
    const retries = result.stderr
      .split("\n")
      .filter((line) => line.includes('"msg":"Provision at http://127.0.0.1:9 failed; retrying"'));
    assert.ok(retries.length >= 1, `says it retries:\n${result.stderr}`);
    assert.match(result.stderr, /the relay stayed unreachable/);
  });

  it("a wrong uplink secret stops the server role with the credentials status", async () => {
    const result = await runCli(
      [
        "serve",
        "--relay",
        `http://127.0.0.1:${RelayPort}`,
        "--network",
        "edge",
        `--uplink-secret=wrong-secret`,
        ...common("a"),
      ],
      { netns: edge.name },
    );
    assert.equal(result.code, ExitCode.BadCredentials, result.stderr);
    assert.match(
      result.stderr,
      /the relay refused access to network "edge" \(HTTP 40[13]\): check --network and --uplink-secret-file/,
    );
    assert.doesNotMatch(result.stderr, /wrong-secret/);
  });

  it("--wireguard kernel on a host without the module (and no --wireguard-go) says what to do", async () => {
    const args = ["join", relay.apiUrl, ...common("k")].map((arg) =>
      arg === "userspace" ? "kernel" : arg,
    );
    const result = await runCli(args, { netns: edge.name });
    assert.equal(result.code, ExitCode.Failure, result.stderr);
    assert.match(result.stderr, /this host has no WireGuard kernel module; .*--wireguard-go/);
  });

  it("without root or CAP_NET_ADMIN it exits with its own status before doing anything", async () => {
    const result = await runCli(["join", relay.apiUrl, ...common("p")], {
      netns: edge.name,
      wrap: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    });
    assert.equal(result.code, ExitCode.NoNetAdmin, result.stderr);
    assert.match(result.stderr, /must run as root or with CAP_NET_ADMIN/);
  });

  it("as another user with CAP_NET_ADMIN (User= with AmbientCapabilities) it passes preflight", async () => {
    // The unit's way: uid nobody holding only CAP_NET_ADMIN, its own state directory (as
    // StateDirectory= makes it), /dev/net/tun as hosts ship it (0666) in a private mount
    // namespace. A closed relay port then ends the run after preflight, with the
    // unreachable-relay status rather than the capability one.
    const own = mkdtempSync(join(tmpdir(), "sidecar-capability-"));
    chownSync(own, 65534, 65534);
    const url = "grpc://127.0.0.1:9?jointoken=edge.secret&grpc_tunnel=true";
    const result = await runCli(
      [
        "join",
        url,
        ...["--iface", `slec${process.pid % 10000}`, "--wireguard", "userspace"],
        ...["--state", own, "--run-dir", own, "--connect-timeout", "1"],
      ],
      {
        netns: edge.name,
        wrap: [
          "unshare",
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          'mount -t tmpfs none /dev/net && mknod -m 0666 /dev/net/tun c 10 200 && exec "$@"',
          "sh",
          "setpriv",
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "--inh-caps=+net_admin",
          "--ambient-caps=+net_admin",
        ],
      },
    );
    rmSync(own, { recursive: true, force: true });
    assert.equal(result.code, ExitCode.RelayUnreachable, result.stderr);
  });

  it("without /dev/net/tun the userspace backend exits with its own status", async () => {
    // A private mount namespace where /dev/net is an empty tmpfs.
    const result = await runCli(["join", relay.apiUrl, ...common("d")], {
      netns: edge.name,
      wrap: [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount -t tmpfs none /dev/net && exec "$@"',
        "sh",
      ],
    });
    assert.equal(result.code, ExitCode.NoTun, result.stderr);
    assert.match(result.stderr, /\/dev\/net\/tun is missing or not accessible/);
  });
});
