/**
 * The site gateway's parts in-process: one machine's relay tunnel and LAN side (GatewayNode,
 * with an in-memory transport), the kept map of UDP machines, the listen option, and the
 * gateway's status, metrics and log lines. The whole path runs in test/e2e/gateway.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { WebSocketServer } from "ws";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { parseUdpEndpoint } from "../../sidecar/bind/endpoint.ts";
import { formatStatus } from "../../sidecar/commands/status.ts";
import { Gateway } from "../../sidecar/gateway/gateway.ts";
import { GatewayNode, type MachineMode } from "../../sidecar/gateway/gateway-node.ts";
import {
  openRelayTunnel,
  type RelayTarget,
  relayApiUrl,
} from "../../sidecar/gateway/relay-tunnel.ts";
import { GATEWAY_MACHINES_FILE, UdpMachines } from "../../sidecar/gateway/udp-machines.ts";
import { createLogger } from "../../sidecar/log.ts";
import { renderMetrics } from "../../sidecar/metrics.ts";
import { NO_PROXY } from "../../sidecar/net/proxy.ts";
import { listenOption, parseOptions } from "../../sidecar/options.ts";
import type { StatusSnapshot } from "../../sidecar/status.ts";
import {
  createTransportStats,
  type NodeTransport,
  type TransportHandlers,
} from "../../sidecar/transport/transport.ts";
import { makeCertificates } from "../support/certificates.ts";
import { eventually } from "../support/eventually.ts";

const log = createLogger("test", { level: "error" });

function memoryTransport() {
  const sent: Uint8Array[] = [];
  const handlers = {} as { current?: TransportHandlers };
  let closed = false;
  const transport: NodeTransport = {
    kind: "websocket",
    state: "connected",
    stats: createTransportStats(),
    lastError: undefined,
    send(datagrams) {
      for (const datagram of datagrams) sent.push(datagram.slice());
    },
    async close() {
      closed = true;
    },
  };
  return {
    sent,
    handlers,
    transport,
    get closed() {
      return closed;
    },
  };
}

/** The relay of network "site" at `origin`, over WebSocket. */
function siteRelay(origin: string): RelayTarget {
  return {
    origin,
    api: relayApiUrl(new URL(origin)),
    network: "site",
    tls: { insecure: false },
    proxy: NO_PROXY,
    transport: "websocket",
  };
}

function node(mode: MachineMode, clock: { now: number }) {
  const relay = memoryTransport();
  const udpSent: { datagrams: Uint8Array[]; to: string }[] = [];
  const refused: string[] = [];
  const gatewayNode = new GatewayNode({
    peerAddrPort: "[fdae:41e4:649b:9304::1234]:50888",
    mode,
    openTunnel(handlers) {
      relay.handlers.current = handlers;
      return relay.transport;
    },
    sendUdp(datagrams, to) {
      udpSent.push({ datagrams: datagrams.map((d) => d.slice()), to: to.toString() });
    },
    onRefused(_node, reason) {
      refused.push(reason);
    },
    log,
    now: () => clock.now,
  });
  return { gatewayNode, relay, udpSent, refused };
}

async function drain(packets: AsyncGenerator<{ Data: Uint8Array }>): Promise<unknown> {
  try {
    for await (const _ of packets) {
    }
    return undefined;
  } catch (error) {
    return error;
  }
}

describe("GatewayNode", () => {
  it("UDP: datagrams go to the relay tunnel; answers go back to the source port last seen", () => {
    const clock = { now: 1000 };
    const { gatewayNode, relay, udpSent } = node("udp", clock);
    gatewayNode.touch("udp", undefined);
    relay.handlers.current?.onDatagrams([Uint8Array.of(9)]);
    assert.equal(udpSent.length, 0, "no source port known yet");
    gatewayNode.fromMachine([Uint8Array.of(1, 2)], parseUdpEndpoint("10.0.0.5:40000"));
    gatewayNode.fromMachine([Uint8Array.of(3)], parseUdpEndpoint("10.0.0.5:40001"));
    relay.handlers.current?.onDatagrams([Uint8Array.of(7, 7)]);
    assert.deepEqual(relay.sent, [Uint8Array.of(1, 2), Uint8Array.of(3)]);
    assert.deepEqual(udpSent, [{ datagrams: [Uint8Array.of(7, 7)], to: "10.0.0.5:40001" }]);
    const report = gatewayNode.report(clock.now);
    assert.equal(report.drops.noMachineEndpoint, 1);
    assert.deepEqual(report.fromMachine, { datagrams: 2, bytes: 3 });
    assert.deepEqual(report.toMachine, { datagrams: 1, bytes: 2 });
    assert.equal(report.lan, "10.0.0.5:40001");
  });

  it("gRPC: a second stream replaces the first (Aborted), relay datagrams reach the open one", async () => {
    const clock = { now: 0 };
    const { gatewayNode, relay } = node("grpc", clock);
    const first = gatewayNode.attachStream("10.0.0.6");
    const second = gatewayNode.attachStream("10.0.0.6");
    const error = await drain(first.packets());
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Aborted);
    relay.handlers.current?.onDatagrams([Uint8Array.of(5, 5, 5)]);
    const packets = second.packets();
    assert.deepEqual((await packets.next()).value, { Data: Uint8Array.of(5, 5, 5) });
    gatewayNode.detachStream(second);
    relay.handlers.current?.onDatagrams([Uint8Array.of(6)]);
    assert.equal(gatewayNode.report(0).drops.noMachineStream, 1);
  });

  it("the relay's refusal ends the machine's stream with the status Talos expects", async () => {
    for (const [reason, code] of [
      ["peer replaced", Code.Aborted],
      ["peer not allowed", Code.PermissionDenied],
    ] as const) {
      const { gatewayNode, relay, refused } = node("grpc", { now: 0 });
      const stream = gatewayNode.attachStream(undefined);
      relay.handlers.current?.onTerminal(reason);
      const error = await drain(stream.packets());
      assert.ok(error instanceof ConnectError, reason);
      assert.equal(error.code, code, reason);
      assert.deepEqual(refused, [reason]);
    }
  });

  it("idle only with no stream open and nothing heard for the timeout; close ends the tunnel", async () => {
    const clock = { now: 0 };
    const { gatewayNode, relay } = node("grpc", clock);
    const stream = gatewayNode.attachStream(undefined);
    clock.now = 200_000;
    assert.equal(gatewayNode.idle(clock.now, 90_000), false, "a stream is open");
    gatewayNode.detachStream(stream);
    assert.equal(gatewayNode.idle(clock.now + 1000, 90_000), false);
    assert.equal(gatewayNode.idle(clock.now + 90_001, 90_000), true);
    await gatewayNode.close();
    assert.equal(relay.closed, true);
  });
});

describe("UdpMachines", () => {
  it("keeps LAN address to virtual endpoint across instances, and forgets by peer", () => {
    const dir = mkdtempSync(join(tmpdir(), "gateway-state-"));
    try {
      const machines = new UdpMachines(dir);
      machines.set("10.0.0.5", "[fdae:41e4:649b:9304::1]:50888");
      machines.set("10.0.0.6", "[fdae:41e4:649b:9304::2]:50888");
      const again = new UdpMachines(dir);
      assert.equal(again.get("10.0.0.5"), "[fdae:41e4:649b:9304::1]:50888");
      again.deletePeer("[fdae:41e4:649b:9304::1]:50888");
      assert.equal(new UdpMachines(dir).get("10.0.0.5"), undefined);
      assert.equal(new UdpMachines(dir).size, 1);
      assert.match(readFileSync(join(dir, GATEWAY_MACHINES_FILE), "utf8"), /10\.0\.0\.6/);
      writeFileSync(join(dir, GATEWAY_MACHINES_FILE), "[1]");
      assert.throws(() => new UdpMachines(dir), /is not a JSON object .* delete it/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("gateway options and reports", () => {
  it("--listen takes ADDRESS:PORT and [IPV6]:PORT, and says what is wrong otherwise", () => {
    const read = (text: string) =>
      listenOption(parseOptions(["--listen", text], [{ name: "listen", value: true }]), "listen");
    assert.deepEqual(read("0.0.0.0:50000"), { host: "0.0.0.0", port: 50000 });
    assert.deepEqual(read("[::]:50000"), { host: "::", port: 50000 });
    assert.throws(() => read("50000"), /--listen "50000": expected ADDRESS:PORT/);
    assert.throws(() => read("0.0.0.0:70000"), /expected ADDRESS:PORT/);
  });

  it("status and metrics show each machine's counters and the transport it chose", () => {
    const snapshot: StatusSnapshot = {
      role: "gateway",
      iface: "gateway",
      backend: "none",
      pid: 1,
      startedAt: "2026-01-01T00:00:00.000Z",
      relay: "https://relay.example",
      up: true,
      transport: {
        kind: "auto",
        choice: "auto",
        reason: "each machine's tunnel chooses for itself: see gateway.nodes",
        state: "connected",
        lastError: null,
        connects: 1,
        rxDatagrams: 4,
        txDatagrams: 3,
        rxBytes: 400,
        txBytes: 300,
      },
      addresses: { local: "0.0.0.0:50000", server: null, virtual: null },
      peers: [],
      drops: { unknownSource: 2 },
      gateway: {
        network: "site",
        listen: "0.0.0.0:50000",
        wireguardListen: "0.0.0.0:51820",
        provisions: { ok: 1, PermissionDenied: 1 },
        lanTlsFailures: 0,
        udpMachines: 1,
        nodes: [
          {
            virtual: "[fdae:41e4:649b:9304::1]:50888",
            mode: "udp",
            lan: "10.0.0.5:40000",
            relay: {
              transport: "http",
              reason: "http: websocket still fails; next probe in 120 s",
              state: "connected",
              connects: 1,
              lastError: null,
            },
            streamOpen: false,
            streams: 0,
            fromMachine: { datagrams: 3, bytes: 300 },
            toMachine: { datagrams: 4, bytes: 400 },
            drops: { noMachineEndpoint: 1 },
            lastHeardSecondsAgo: 2,
          },
        ],
      },
    };
    const metrics = renderMetrics(snapshot, Date.parse("2026-01-01T00:00:10.000Z"));
    const node = 'node="[fdae:41e4:649b:9304::1]:50888"';
    assert.match(
      metrics,
      /^siderolink_sidecar_gateway_provisions_total\{outcome="PermissionDenied"\} 1$/m,
    );
    assert.match(metrics, /^siderolink_sidecar_gateway_machines\{mode="udp"\} 1$/m);
    assert.ok(
      metrics.includes(
        `siderolink_sidecar_gateway_bytes_total{${node},direction="to_machine"} 400`,
      ),
    );
    assert.ok(
      metrics.includes(
        `siderolink_sidecar_gateway_drops_total{${node},reason="noMachineEndpoint"} 1`,
      ),
    );
    assert.match(metrics, /^siderolink_sidecar_drops_total\{reason="unknownSource"\} 2$/m);
    const text = formatStatus(snapshot);
    assert.match(text, /machines: {2}1 \(network site, UDP 0\.0\.0\.0:51820\)/);
    assert.match(
      text,
      /\[fdae:41e4:649b:9304::1\]:50888 udp from 10\.0\.0\.5:40000: relay http connected/,
    );
    assert.match(text, /^ {6}auto: http: websocket still fails; next probe in 120 s$/m);
  });
});

describe("the gateway's log", () => {
  it("names each machine's relay tunnel, and says a tunnel the relay ended is the machine's to provision again", async () => {
    // A relay that upgrades the tunnel and then refuses the peer, as the relay does a removed node.
    const relay = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    relay.on("connection", (socket) => socket.close(CloseCode.PeerNotAllowed, "peer not allowed"));
    await new Promise((resolve) => relay.once("listening", resolve));
    const origin = `http://127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const lines: { msg: string; machine?: string; reason?: string }[] = [];
    const gatewayLog = createLogger("gateway", {
      format: "json",
      write: (line) => lines.push(JSON.parse(line)),
    });
    const machine = "[fdae:41e4:649b:9304::77]:50888";
    const refused: string[] = [];
    const tunnel = openRelayTunnel(siteRelay(origin), machine, {
      onDatagrams() {},
      onTerminal: (reason) => refused.push(reason),
      log: gatewayLog.with({ machine }),
    });
    try {
      await eventually("the relay's refusal", () => (refused.length > 0 ? true : undefined));
      assert.deepEqual(refused, ["peer not allowed"]);
      const said = lines.map((line) => `${line.msg} (${line.machine})`);
      assert.deepEqual(said, [
        `machine's relay tunnel connected (${machine})`,
        `the relay ended the machine's relay tunnel; its stream ends and the gateway forgets it until it provisions again (${machine})`,
      ]);
      assert.equal(lines[1].reason, "peer not allowed");
      assert.ok(!said.some((line) => /provisioning again|tunnel stream/.test(line)));
    } finally {
      await tunnel.close();
      await new Promise((resolve) => relay.close(resolve));
    }
  });
});

describe("the gateway's LAN API over TLS", () => {
  it("counts every failed TLS handshake, and logs one line a minute per LAN address with the number held back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gateway-lan-tls-"));
    makeCertificates(dir, ["127.0.0.1"]);
    const lines: { msg: string; lan?: string; sameSinceLastLine?: number }[] = [];
    const clock = { now: Date.parse("2026-01-01T00:00:00.000Z") };
    // Never dialled: every connection fails its TLS handshake before any Provision.
    const origin = "http://127.0.0.1:9";
    const gateway = new Gateway({
      relay: siteRelay(origin),
      provisionProtocol: "connect",
      listen: { host: "127.0.0.1", port: 0 },
      lanTls: { certFile: join(dir, "server.pem"), keyFile: join(dir, "server.key") },
      idleTimeoutMs: 90_000,
      stateDirectory: join(dir, "state"),
      name: "gw-tls-test",
      log: createLogger("gateway", {
        format: "json",
        write: (line) => lines.push(JSON.parse(line)),
      }),
      now: () => clock.now,
    });
    await gateway.start();
    // What a Talos machine set to grpc:// sends first: the HTTP/2 client preface, in the clear.
    const plaintext = () =>
      new Promise<void>((resolve) => {
        const socket = connect(gateway.port, "127.0.0.1", () =>
          socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        );
        socket.on("error", () => {});
        socket.on("close", () => resolve());
      });
    const failures = async () => (await gateway.snapshot()).gateway!.lanTlsFailures;
    const said = () => lines.filter((line) => /TLS handshake failed/.test(line.msg));
    try {
      for (let i = 0; i < 4; i++) await plaintext();
      await eventually("four failures counted", async () => (await failures()) === 4);
      assert.equal(said().length, 1, "one line for four failures inside a minute");
      assert.equal(said()[0].lan, "127.0.0.1");
      assert.equal(said()[0].sameSinceLastLine, undefined);
      clock.now += 60_000;
      await plaintext();
      await eventually("the fifth counted", async () => (await failures()) === 5);
      assert.equal(said().length, 2, "a line again once the minute is over");
      assert.equal(said()[1].sameSinceLastLine, 3, "with the three held back");
      const snapshot = await gateway.snapshot();
      assert.match(
        renderMetrics(snapshot, clock.now),
        /^siderolink_sidecar_gateway_lan_tls_failures_total 5$/m,
      );
      assert.match(formatStatus(snapshot), /^ +5 LAN connections failed the TLS handshake/m);
    } finally {
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
