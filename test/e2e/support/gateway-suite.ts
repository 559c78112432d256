/**
 * The site gateway end to end: Talos machines on a site's LAN reach the management server
 * through `siderolink-sidecar gateway`, whose link to the edge drops every UDP datagram.
 *
 *   m-grpc (10.97.1.2) --+
 *                        +-- site (gateway; UDP to the edge dropped) -- edge (relay) -- mgmt
 *   m-udp  (10.97.2.2) --+
 *
 * m-grpc provisions with wireguard_over_grpc and tunnels over CreateStream to the gateway;
 * m-udp provisions without it and sends plain WireGuard UDP to the gateway's LAN endpoint. Both
 * are wireguard-go interfaces configured as Talos configures its link (fixtures/talos-link.ts).
 *
 * A run chooses how the gateway reaches the relay (`--transport`) and whether it serves its LAN
 * API over TLS (`--tls-cert/--tls-key`, the machines then dialling `https://` as Talos does).
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { LabProcess, Netns } from "../../netns/netns.ts";
import { cliPath, nodeBinary, runCli } from "../../sidecar/support/cli.ts";
import { makeCertificates, type TestCertificates } from "../../support/certificates.ts";
import { eventually } from "../../support/eventually.ts";
import {
  createTopology,
  Links,
  NetworkName,
  nodeUuid,
  type Relay,
  type RelayKind,
  type Topology,
} from "./topology.ts";
import { MiB, ping, pingUntilReply, startTransfer, transfer } from "./traffic.ts";
import { plainWireGuard } from "./udp-block.ts";

const suffix = String(process.pid % 100000);
const TransferBytes = 64 * MiB;
const GatewayPort = 50000;
const GatewayUdpPort = 51820;
const GatewayName = `gw${suffix}`;
const talosLinkFixture = new URL("../fixtures/talos-link.ts", import.meta.url).pathname;

type Mode = "grpc" | "udp";
/** Each machine's link to the site: the gateway's LAN address and the machine's. */
const Lan: Record<Mode, { gateway: string; machine: string }> = {
  grpc: { gateway: "10.97.1.1", machine: "10.97.1.2" },
  udp: { gateway: "10.97.2.1", machine: "10.97.2.2" },
};

interface MachineInfo {
  publicKey: string;
  nodeAddressPrefix: string;
  serverAddress: string;
  serverEndpoint: string[];
  grpcPeerAddrPort: string;
  tunnel: boolean;
}

interface Machine {
  ns: Netns;
  process: LabProcess;
  info: MachineInfo;
  address: string;
}

interface GatewayNodeStatus {
  virtual: string;
  mode: Mode;
  lan: string | null;
  relay: { transport: string; reason: string | null; state: string; connects: number };
  streams: number;
  fromMachine: { datagrams: number; bytes: number };
  toMachine: { datagrams: number; bytes: number };
}

interface GatewayStatus {
  role: string;
  up: boolean;
  transport: { kind: string; reason: string | null };
  pid: number;
  drops: Record<string, number>;
  gateway: { provisions: Record<string, number>; nodes: GatewayNodeStatus[] };
}

interface Context {
  topology: Topology;
  relay: Relay;
  site: Netns;
  gateway: LabProcess;
  machines: Record<Mode, Machine>;
  run: Required<GatewayRun>;
  /** The LAN API's certificate and its CA, when the gateway serves it over TLS. */
  lanTls: TestCertificates | undefined;
}

export interface GatewayRun {
  /** The gateway's `--transport`: how it carries the machines to the relay (default websocket). */
  readonly transport?: "websocket" | "grpc" | "http" | "auto";
  /** Whether the gateway serves its LAN API over TLS (default: plaintext HTTP/2). */
  readonly lanTls?: boolean;
}

export function describeGateway(kind: RelayKind, options: GatewayRun = {}): void {
  const run = { transport: options.transport ?? "websocket", lanTls: options.lanTls ?? false };
  const runtime = kind === "node" ? "Node" : "Worker (workerd, HTTPS)";
  const lan = run.lanTls ? "TLS" : "plaintext";
  describe(`site gateway: Talos machines behind a UDP-blocking firewall, ${runtime} relay, ${run.transport} to it, ${lan} LAN API`, {
    timeout: 600_000,
  }, () => {
    const c = {} as Context;
    before(async () => {
      Object.assign(c, await setUp(kind, run));
    });
    after(async () => {
      await c.topology?.close();
    });
    defineAssertions(() => c);
    if (run.lanTls) defineTlsAssertions(() => c);
  });
}

function gatewayArgs(c: Context): string[] {
  const { relay, topology, run, lanTls } = c;
  return [
    cliPath,
    "gateway",
    "--relay",
    `${relay.kind === "node" ? "http" : "https"}://${Links.site.edge}:${relay.kind === "node" ? 8787 : 8443}`,
    "--network",
    NetworkName,
    "--listen",
    `0.0.0.0:${GatewayPort}`,
    "--wireguard-listen",
    `0.0.0.0:${GatewayUdpPort}`,
    "--name",
    GatewayName,
    "--state",
    join(topology.work, "state-gateway"),
    "--run-dir",
    topology.runDir,
    "--transport",
    run.transport,
    ...(lanTls ? ["--tls-cert", lanTls.cert, "--tls-key", lanTls.key] : []),
    ...relay.tlsArgs,
  ];
}

/**
 * A Talos machine pointed at the gateway: `https://` when the gateway serves TLS, trusting its
 * CA, unless `dial` says otherwise (a machine that gets it wrong).
 */
async function startMachine(
  c: Context,
  mode: Mode,
  joinToken: string,
  dial: { scheme?: "grpc" | "https"; trustsCa?: boolean } = {},
): Promise<LabProcess> {
  const scheme = dial.scheme ?? (c.lanTls ? "https" : "grpc");
  const trusted = c.lanTls !== undefined && scheme === "https" && dial.trustsCa !== false;
  return c.machines[mode].ns.spawn(
    nodeBinary,
    [
      talosLinkFixture,
      `${scheme}://${Lan[mode].gateway}:${GatewayPort}`,
      joinToken,
      nodeUuid(),
      `t${mode[0]}${suffix}`,
      mode,
    ],
    { env: trusted && c.lanTls ? { TALOS_TRUSTED_ROOTS: c.lanTls.ca } : {} },
  );
}

async function setUp(kind: RelayKind, run: Required<GatewayRun>): Promise<Context> {
  const tag = `${run.transport[0]}${run.lanTls ? "t" : ""}`;
  const topology = await createTopology(`gw${kind[0]}${tag}`);
  try {
    const relay = await topology.startRelay(kind);
    const server = topology.startServer(relay, `sm${suffix}`);
    await server.waitFor(/"msg":"ready"/, 30_000);
    const site = await topology.lab.namespace("site");
    const [, uplink] = await topology.lab.link(
      topology.edge,
      `${Links.site.edge}/24`,
      site,
      `${Links.site.host}/24`,
    );
    await site.blockUdp(uplink);
    let lanTls: TestCertificates | undefined;
    if (run.lanTls) {
      const dir = join(topology.work, "lan-tls");
      mkdirSync(dir);
      lanTls = makeCertificates(dir, [Lan.grpc.gateway, Lan.udp.gateway]);
    }
    const c = { topology, relay, site, machines: {}, run, lanTls } as Context;
    for (const mode of ["grpc", "udp"] as const) {
      const ns = await topology.lab.namespace(`m-${mode}`);
      await topology.lab.link(site, `${Lan[mode].gateway}/24`, ns, `${Lan[mode].machine}/24`);
      c.machines[mode] = { ns } as Machine;
    }
    c.gateway = site.spawn(nodeBinary, gatewayArgs(c));
    await c.gateway.waitFor(/"msg":"ready"/, 30_000);
    for (const mode of ["grpc", "udp"] as const) {
      const process = await startMachine(c, mode, relay.info.joinToken);
      const info = JSON.parse(await process.waitFor(/^\{/, 60_000)) as MachineInfo;
      c.machines[mode] = {
        ...c.machines[mode],
        process,
        info,
        address: info.nodeAddressPrefix.split("/")[0],
      };
    }
    return c;
  } catch (error) {
    await topology.close();
    throw error;
  }
}

async function gatewayStatus(c: Context): Promise<GatewayStatus> {
  const result = await runCli([
    "status",
    "--json",
    "--iface",
    GatewayName,
    "--run-dir",
    c.topology.runDir,
  ]);
  assert.ok(result.stdout.startsWith("{"), `gateway status: ${result.code} ${result.stderr}`);
  return JSON.parse(result.stdout) as GatewayStatus;
}

/** A machine's entry: by its virtual endpoint (tunnel), or by its LAN address (UDP: its
 * answer carried no virtual endpoint, and the gateway knows it by source). */
function nodeOf(
  status: GatewayStatus,
  machine: Machine,
  mode: Mode,
): GatewayNodeStatus | undefined {
  return status.gateway.nodes.find((node) =>
    mode === "grpc"
      ? node.virtual === machine.info.grpcPeerAddrPort
      : node.mode === "udp" && node.lan?.startsWith(`${Lan.udp.machine}:`),
  );
}

async function provisionsOk(c: Context): Promise<number> {
  const metrics = await c.relay.admin(`/v1/networks/${NetworkName}/metrics`);
  return Number(/^siderolink_relay_provisions_total\{code="ok"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
}

function defineAssertions(get: () => Context): void {
  it("the block is real: plain WireGuard over UDP from the site to the edge gets no handshake", async () => {
    const c = get();
    const blocked = await plainWireGuard(
      c.topology.work,
      c.topology.edge,
      Links.site.edge,
      c.site,
      `${suffix}s`,
    );
    assert.equal(blocked.reached, false, "no WireGuard over UDP from the site");
    assert.equal(blocked.latestHandshake, 0);
  });

  it("Provision through the gateway: the tunnel machine gets the relay's answer, the UDP machine the gateway's LAN endpoint", async () => {
    const { machines, relay } = get();
    const grpc = machines.grpc.info;
    assert.equal(grpc.tunnel, true);
    assert.match(grpc.grpcPeerAddrPort, /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:5088[89]$/);
    assert.deepEqual(
      grpc.serverEndpoint,
      [grpc.grpcPeerAddrPort],
      "server_endpoint as the relay gave it",
    );
    const udp = machines.udp.info;
    assert.equal(udp.tunnel, false, "no grpc_peer_addr_port for a machine without grpc_tunnel");
    assert.deepEqual(udp.serverEndpoint, [`${Lan.udp.gateway}:${GatewayUdpPort}`]);
    for (const info of [grpc, udp]) {
      assert.equal(info.serverAddress, relay.info.serverAddress);
      assert.ok(info.nodeAddressPrefix.startsWith(relay.info.serverAddress.replace(/::1$/, ":")));
    }
  });

  it("both machines ping the management server, and the server pings them", async () => {
    const c = get();
    for (const mode of ["grpc", "udp"] as const) {
      const machine = c.machines[mode];
      await pingUntilReply(machine.ns, c.relay.info.serverAddress);
      await pingUntilReply(c.topology.mgmt, machine.address);
      const forth = await ping(machine.ns, c.relay.info.serverAddress, 5);
      const back = await ping(c.topology.mgmt, machine.address, 5);
      assert.equal(
        forth.received,
        forth.transmitted,
        `${mode} to server: ${JSON.stringify(forth)}`,
      );
      assert.equal(back.received, back.transmitted, `server to ${mode}: ${JSON.stringify(back)}`);
    }
  });

  it(`${TransferBytes / MiB} MiB each way for each machine, SHA-256 equal`, async () => {
    const c = get();
    let port = 5301;
    for (const mode of ["grpc", "udp"] as const) {
      const machine = c.machines[mode];
      const up = await transfer(
        machine.ns,
        c.topology.mgmt,
        c.relay.info.serverAddress,
        port++,
        TransferBytes,
      );
      const down = await transfer(
        c.topology.mgmt,
        machine.ns,
        machine.address,
        port++,
        TransferBytes,
      );
      for (const result of [up, down]) {
        assert.equal(result.bytesReceived, TransferBytes, mode);
        assert.equal(result.receivedSha256, result.sentSha256, mode);
      }
    }
  });

  it("the two machines on the site cannot reach each other over the overlay", async () => {
    const { machines, topology } = get();
    const a = await ping(machines.grpc.ns, machines.udp.address, 3);
    const b = await ping(machines.udp.ns, machines.grpc.address, 3);
    assert.equal(a.received, 0, "the tunnel machine reached the UDP machine");
    assert.equal(b.received, 0, "the UDP machine reached the tunnel machine");
    assert.equal((await ping(topology.mgmt, machines.grpc.address, 2)).received, 2);
    assert.equal((await ping(topology.mgmt, machines.udp.address, 2)).received, 2);
  });

  it("status --json counts per machine, and refuses UDP from a LAN address no machine provisioned from", async () => {
    const c = get();
    const before = await gatewayStatus(c);
    assert.equal(before.role, "gateway");
    assert.equal(before.up, true);
    assert.equal(before.transport.kind, c.run.transport, "the transport asked for");
    if (c.run.transport === "auto") assert.match(before.transport.reason ?? "", /gateway\.nodes/);
    assert.ok((before.gateway.provisions.ok ?? 0) >= 2);
    for (const mode of ["grpc", "udp"] as const) {
      const node = nodeOf(before, c.machines[mode], mode);
      assert.ok(node, `${mode} machine in the gateway's status: ${JSON.stringify(before)}`);
      assert.equal(node.mode, mode);
      assert.equal(node.relay.state, "connected");
      if (c.run.transport === "auto") {
        // WebSocket passes the site's egress (only UDP is dropped), so auto stays on it.
        assert.equal(node.relay.transport, "websocket", `${mode} machine's tunnel under auto`);
        assert.equal(node.relay.reason, "websocket: preferred for this relay URL");
      } else {
        assert.equal(node.relay.transport, c.run.transport, `${mode} machine's tunnel`);
        assert.equal(node.relay.reason, null);
      }
      assert.ok(node.fromMachine.bytes > TransferBytes, `${mode} bytes from the machine`);
      assert.ok(node.toMachine.bytes > TransferBytes, `${mode} bytes to the machine`);
    }
    assert.match(nodeOf(before, c.machines.udp, "udp")?.lan ?? "", /^10\.97\.2\.2:\d+$/);
    // The tunnel machine's LAN address never provisioned for UDP: its datagrams are refused.
    const script =
      'const s = require("node:dgram").createSocket("udp4");' +
      `s.send(Buffer.alloc(148, 1), ${GatewayUdpPort}, "${Lan.grpc.gateway}", () => s.send(Buffer.alloc(32), ${GatewayUdpPort}, "${Lan.grpc.gateway}", () => s.close()));`;
    await c.machines.grpc.ns.run(nodeBinary, ["-e", script]);
    const after = await eventually(
      "the refused datagrams counted",
      async () => {
        const status = await gatewayStatus(c);
        return status.drops.unknownSource >= (before.drops.unknownSource ?? 0) + 2
          ? status
          : undefined;
      },
      10_000,
      200,
    );
    assert.equal(after.gateway.nodes.length, 2, "no node made for an unknown source");
  });

  it("a bad join token: the machine gets the relay's PermissionDenied through the gateway", async () => {
    const c = get();
    const process = await startMachine(c, "grpc", `${NetworkName}.not-the-secret`);
    const exit = await process.exited;
    assert.notEqual(exit.code, 0);
    assert.match(process.output(), /7 PERMISSION_DENIED: invalid join token/);
  });

  it("the gateway killed and restarted mid-transfer: both transfers complete intact, no machine provisions again", async () => {
    const c = get();
    const provisioned = await provisionsOk(c);
    const before = await gatewayStatus(c);
    const streamLines = c.machines.grpc.process.output().split("stream open").length;
    const bytes = 32 * MiB;
    const running = [];
    let port = 5321;
    for (const mode of ["grpc", "udp"] as const) {
      const transferRun = await startTransfer(
        c.machines[mode].ns,
        c.topology.mgmt,
        c.relay.info.serverAddress,
        port++,
        bytes,
        { mbit: 40, timeoutMs: 180_000 },
      );
      await transferRun.receiver.waitFor(/^progress /, 30_000);
      running.push(transferRun);
    }
    c.gateway.child.kill("SIGKILL");
    await c.gateway.exited;
    c.gateway = c.site.spawn(nodeBinary, gatewayArgs(c));
    await c.gateway.waitFor(/"msg":"ready"/, 30_000);
    for (const transferRun of running) {
      const result = await transferRun.done;
      assert.equal(result.bytesReceived, bytes);
      assert.equal(result.receivedSha256, result.sentSha256, "the bytes arrived intact");
    }
    const after = await gatewayStatus(c);
    assert.notEqual(after.pid, before.pid, "a new gateway process");
    for (const mode of ["grpc", "udp"] as const) {
      const node = nodeOf(after, c.machines[mode], mode);
      assert.ok(node, `${mode} machine back in the gateway's status`);
      assert.equal(node.mode, mode, "the UDP machine recognised from the kept LAN address");
    }
    assert.ok(
      c.machines.grpc.process.output().split("stream open").length > streamLines,
      "the tunnel machine opened a new stream",
    );
    for (const mode of ["grpc", "udp"] as const) {
      assert.equal(c.machines[mode].process.child.exitCode, null, `${mode} machine still running`);
      await pingUntilReply(c.machines[mode].ns, c.relay.info.serverAddress);
    }
    assert.equal(await provisionsOk(c), provisioned, "the relay served no Provision meanwhile");
  });
}

/** What a gateway serving its LAN API over TLS refuses: machines that do not dial it as it is. */
function defineTlsAssertions(get: () => Context): void {
  const refusedAt = async (
    c: Context,
    dial: { scheme: "grpc" | "https"; trustsCa?: boolean },
  ): Promise<string> => {
    const before = await gatewayStatus(c);
    const relayOk = await provisionsOk(c);
    const machine = await startMachine(c, "grpc", c.relay.info.joinToken, dial);
    const exit = await machine.exited;
    assert.notEqual(exit.code, 0, `the machine provisioned: ${machine.output()}`);
    const after = await gatewayStatus(c);
    assert.deepEqual(after.gateway.provisions, before.gateway.provisions, "no Provision served");
    assert.equal(await provisionsOk(c), relayOk, "nothing reached the relay");
    return machine.output();
  };

  it("over TLS, a machine dialling grpc:// (plaintext HTTP/2) gets no answer, and the gateway says why", async () => {
    const c = get();
    const output = await refusedAt(c, { scheme: "grpc" });
    // The TLS listener reads the h2c preface as a TLS record of no known version and drops the
    // connection; grpc-js then reports the channel as unable to connect.
    assert.match(
      output,
      /14 UNAVAILABLE: No connection established\. Last error: Failed to connect/,
    );
    assert.match(
      c.gateway.output(),
      /"msg":"a machine's TLS handshake failed: its siderolink.api must be https:\/\/GATEWAY:PORT[^\n]*"lan":"10\.97\.1\.2","code":"ERR_SSL_WRONG_VERSION_NUMBER"/,
    );
  });

  it("over TLS, a machine that does not trust the gateway's CA refuses the gateway", async () => {
    const output = await refusedAt(get(), { scheme: "https", trustsCa: false });
    assert.match(
      output,
      /14 UNAVAILABLE: No connection established\. Last error: Error: unable to verify the first certificate/,
    );
  });
}
