/**
 * The operator-facing pieces without a network: option parsing, the JSON log and its secret
 * masking, Prometheus rendering, `wg show dump` parsing, and each command's --help.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDump } from "../../sidecar/backend/wg-interface.ts";
import { formatStatus } from "../../sidecar/commands/status.ts";
import { ExitCode, SidecarError } from "../../sidecar/exit-codes.ts";
import { backoffDelay } from "../../sidecar/lifecycle.ts";
import { createLogger, redactUrl } from "../../sidecar/log.ts";
import { renderMetrics } from "../../sidecar/metrics.ts";
import { choiceOption, integerOption, parseOptions } from "../../sidecar/options.ts";
import type { StatusSnapshot } from "../../sidecar/status.ts";
import { jittered } from "../../sidecar/transport/transport.ts";
import { runCli } from "./support/cli.ts";

const specs = [
  { name: "iface", value: true, env: "T_IFACE" },
  { name: "insecure", value: false, env: "T_INSECURE" },
  { name: "port", value: true },
] as const;

describe("options", () => {
  it("reads --name value, --name=value, flags, positionals, and falls back to the environment", () => {
    const options = parseOptions(["url", "--iface", "wg9", "--port=80", "--insecure"], specs, {});
    assert.deepEqual(options.positional, ["url"]);
    assert.equal(options.get("iface"), "wg9");
    assert.equal(options.get("port"), "80");
    assert.equal(options.flag("insecure"), true);
    const fromEnv = parseOptions([], specs, { T_IFACE: "envif", T_INSECURE: "1" });
    assert.equal(fromEnv.get("iface"), "envif");
    assert.equal(fromEnv.flag("insecure"), true);
    assert.equal(parseOptions(["--iface", "flag"], specs, { T_IFACE: "env" }).get("iface"), "flag");
  });

  it("a value may start with a dash (base64url secrets do)", () => {
    assert.equal(parseOptions(["--iface", "--x"], specs, {}).get("iface"), "--x");
  });

  it("refuses unknown options, missing values and values on flags with the usage status", () => {
    for (const args of [["--nope"], ["--iface"], ["--insecure=yes"]]) {
      assert.throws(
        () => parseOptions(args, specs, {}),
        (error: unknown) => error instanceof SidecarError && error.exitCode === ExitCode.Usage,
      );
    }
  });

  it("checks numbers and choices, naming the option", () => {
    assert.equal(
      integerOption(parseOptions(["--port", "9464"], specs, {}), "port", 0, 0, 65535),
      9464,
    );
    assert.throws(
      () => integerOption(parseOptions(["--port", "x"], specs, {}), "port", 0, 0, 65535),
      /--port "x": expected a whole number 0-65535/,
    );
    assert.throws(
      () => choiceOption(parseOptions(["--iface", "bad"], specs, {}), "iface", ["a", "b"], "a"),
      /--iface "bad": expected one of a, b/,
    );
  });
});

describe("logs", () => {
  it("writes one JSON object per line with level, scope and fields, masking secret fields", () => {
    const lines: string[] = [];
    const log = createLogger("join", { write: (line) => lines.push(line), level: "info" }).with({
      iface: "sl0",
    });
    log.debug("hidden");
    log.info("hello", { joinToken: "net.secret", count: 2 });
    log.warn("careful", { adminSecret: "s", privateKey: "k" });
    assert.equal(lines.length, 2);
    const first = JSON.parse(lines[0]);
    assert.equal(first.level, "info");
    assert.equal(first.scope, "join");
    assert.equal(first.msg, "hello");
    assert.equal(first.iface, "sl0");
    assert.equal(first.count, 2);
    assert.equal(first.joinToken, "[redacted]");
    assert.doesNotMatch(lines.join(""), /net\.secret|"s"|"k"/);
    assert.ok(lines.every((line) => line.endsWith("\n")));
  });

  it("redacts URLs down to scheme, host and path", () => {
    assert.equal(
      redactUrl("grpc://10.0.0.1:8787?jointoken=net.secret&grpc_tunnel=true"),
      "grpc://10.0.0.1:8787?[redacted]",
    );
    assert.equal(redactUrl("https://user:pw@relay.example.com/x"), "https://relay.example.com/x");
  });
});

describe("retry timing", () => {
  it("jitters the 10 s stream retry by +-20 % and backs start-up retries off from 1 s to 30 s", () => {
    assert.equal(
      jittered(10_000, () => 0),
      8_000,
    );
    assert.equal(
      jittered(10_000, () => 1),
      12_000,
    );
    assert.equal(
      backoffDelay(0, () => 0.5),
      1_000,
    );
    assert.equal(
      backoffDelay(3, () => 0.5),
      8_000,
    );
    assert.equal(
      backoffDelay(12, () => 0.5),
      30_000,
    );
  });
});

const snapshot: StatusSnapshot = {
  role: "node",
  iface: "siderolink",
  backend: "userspace",
  pid: 42,
  startedAt: "2026-01-01T00:00:00.000Z",
  relay: "grpc://10.0.0.1:8787?[redacted]",
  up: true,
  transport: {
    kind: "websocket",
    choice: "auto",
    reason: "websocket: preferred for this relay URL",
    state: "connected",
    lastError: null,
    connects: 1,
    rxDatagrams: 5,
    txDatagrams: 6,
    rxBytes: 500,
    txBytes: 600,
  },
  addresses: { local: "fdae::5/64", server: "fdae::1", virtual: "[fdae:41e4:649b:9304::5]:50888" },
  peers: [
    {
      publicKey: "K=",
      endpoint: "[fdae:41e4:649b:9304::5]:50888",
      lastHandshake: "2026-01-01T00:01:00.000Z",
      lastHandshakeAgeSeconds: 30,
      rxBytes: 100,
      txBytes: 200,
    },
  ],
  drops: { noRoute: 3, tunnelCongested: 0 },
};

describe("metrics", () => {
  it("renders the status in Prometheus text format", () => {
    const text = renderMetrics(snapshot, Date.parse("2026-01-01T00:01:30.000Z"));
    for (const line of [
      "# TYPE siderolink_sidecar_up gauge",
      'siderolink_sidecar_up{role="node"} 1',
      'siderolink_sidecar_transport_connected{role="node",kind="websocket"} 1',
      'siderolink_sidecar_transport_connects_total{role="node"} 1',
      'siderolink_sidecar_tunnel_datagrams_total{direction="rx"} 5',
      'siderolink_sidecar_tunnel_bytes_total{direction="tx"} 600',
      'siderolink_sidecar_drops_total{reason="noRoute"} 3',
      'siderolink_sidecar_peers{role="node"} 1',
      'siderolink_sidecar_peer_last_handshake_age_seconds{peer="K="} 30',
      'siderolink_sidecar_peer_bytes_total{peer="K=",direction="rx"} 100',
    ]) {
      assert.ok(text.split("\n").includes(line), `missing line: ${line}\n${text}`);
    }
  });

  it("the status text names the link state, addresses and peers", () => {
    const text = formatStatus(snapshot);
    assert.match(text, /^siderolink: node \(userspace WireGuard\), link UP$/m);
    assert.match(
      text,
      /endpoint \[fdae:41e4:649b:9304::5\]:50888, handshake 30 s ago, rx 100 B, tx 200 B/,
    );
    assert.match(text, /drops: {5}noRoute=3$/m);
  });
});

describe("wg show dump", () => {
  it("maps loopback bridge endpoints back to tunnel endpoints", () => {
    const dump = [
      "cHJpdmF0ZQ==\tcHVibGlj\t51820\toff",
      "QUFB\t(none)\t127.0.0.1:40001\tfdae::5/128\t1700000000\t1234\t5678\t25",
      "QkJC\t(none)\t(none)\tfdae::6/128\t0\t0\t0\toff",
    ].join("\n");
    const peers = parseDump(
      `${dump}\n`,
      new Map([["127.0.0.1:40001", "[fdae:41e4:649b:9304::5]:50888"]]),
    );
    assert.deepEqual(peers, [
      {
        publicKey: "QUFB",
        endpoint: "[fdae:41e4:649b:9304::5]:50888",
        lastHandshake: 1_700_000_000_000,
        rxBytes: 1234,
        txBytes: 5678,
      },
      { publicKey: "QkJC", endpoint: null, lastHandshake: 0, rxBytes: 0, txBytes: 0 },
    ]);
  });
});

describe("--help", () => {
  for (const [command, phrases] of [
    [
      "join",
      [
        "--wireguard BACKEND",
        "--transport KIND",
        "auto (default, as for serve)",
        "--ca-file FILE",
        "--insecure",
        "--metrics-port PORT",
        "SIDEROLINK_API",
      ],
    ],
    [
      "serve",
      [
        "--relay URL",
        "--network NAME",
        "--uplink-secret-file FILE",
        "--wireguard-go CMD",
        "auto (default, as for join)",
      ],
    ],
    ["status", ["--json", "--iface NAME"]],
  ] as const) {
    it(`${command} --help explains its options and exits 0`, async () => {
      const result = await runCli([command, "--help"]);
      assert.equal(result.code, 0);
      for (const phrase of phrases)
        assert.ok(result.stdout.includes(phrase), `${command} --help mentions ${phrase}`);
    });
  }

  it("the command list names join, serve and status", async () => {
    const result = await runCli(["--help"]);
    assert.equal(result.code, 0);
    assert.match(
      result.stdout,
      /^ {2}join +join this machine to a SideroLink network \(node role\)$/m,
    );
    assert.match(result.stdout, /^ {2}serve +terminate a SideroLink network/m);
    assert.match(result.stdout, /^ {2}status +show the link state/m);
  });
});
