/**
 * Prometheus metrics of a running sidecar, served on 127.0.0.1 only (`--metrics-port`): the
 * status snapshot rendered in the text exposition format. Names start with
 * `siderolink_sidecar_`.
 */
import { createServer, type Server } from "node:http";
import { formatLabels, PROMETHEUS_CONTENT_TYPE } from "../shared/prometheus.ts";
import type { GatewayReport } from "./gateway/gateway.ts";
import type { StatusSnapshot } from "./status.ts";

export function renderMetrics(snapshot: StatusSnapshot, now: number): string {
  const out: string[] = [];
  const metric: MetricWriter = (name, type, help, samples) => {
    out.push(
      `# HELP siderolink_sidecar_${name} ${help}`,
      `# TYPE siderolink_sidecar_${name} ${type}`,
    );
    for (const [labels, value] of samples) {
      const text = formatLabels(labels);
      out.push(`siderolink_sidecar_${name}${text ? `{${text}}` : ""} ${value}`);
    }
  };
  const role = { role: snapshot.role };
  const t = snapshot.transport;
  metric("up", "gauge", "1 when the link is usable (see status).", [[role, snapshot.up ? 1 : 0]]);
  metric("transport_connected", "gauge", "1 while the tunnel or uplink stream is open.", [
    [{ ...role, kind: t.kind }, t.state === "connected" ? 1 : 0],
  ]);
  metric("transport_connects_total", "counter", "Streams opened to the relay.", [
    [role, t.connects],
  ]);
  metric("tunnel_datagrams_total", "counter", "WireGuard datagrams carried by the stream.", [
    [{ direction: "rx" }, t.rxDatagrams],
    [{ direction: "tx" }, t.txDatagrams],
  ]);
  metric("tunnel_bytes_total", "counter", "Bytes of WireGuard datagrams carried by the stream.", [
    [{ direction: "rx" }, t.rxBytes],
    [{ direction: "tx" }, t.txBytes],
  ]);
  metric(
    "drops_total",
    "counter",
    "Packets and datagrams dropped, by reason.",
    Object.entries(snapshot.drops).map(([reason, value]) => [{ reason }, value]),
  );
  metric("peers", "gauge", "WireGuard peers configured.", [[role, snapshot.peers.length]]);
  metric(
    "peer_last_handshake_age_seconds",
    "gauge",
    "Seconds since the last handshake with each peer (absent before the first).",
    snapshot.peers
      .filter((peer) => peer.lastHandshake !== null)
      .map((peer) => [
        { peer: peer.publicKey },
        Math.max(0, (now - Date.parse(peer.lastHandshake!)) / 1000),
      ]),
  );
  metric(
    "peer_bytes_total",
    "counter",
    "WireGuard bytes exchanged with each peer.",
    snapshot.peers.flatMap((peer): [Record<string, string>, number][] => [
      [{ peer: peer.publicKey, direction: "rx" }, peer.rxBytes],
      [{ peer: peer.publicKey, direction: "tx" }, peer.txBytes],
    ]),
  );
  if (snapshot.records) {
    metric(
      "records_total",
      "counter",
      "Events and kernel log lines from nodes, by service and outcome.",
      Object.entries(snapshot.records).flatMap(([service, outcomes]) =>
        Object.entries(outcomes).map(([outcome, value]): [Record<string, string>, number] => [
          { service, outcome },
          value,
        ]),
      ),
    );
  }
  if (snapshot.gateway) renderGateway(snapshot.gateway, metric);
  return `${out.join("\n")}\n`;
}

type MetricWriter = (
  name: string,
  type: "gauge" | "counter",
  help: string,
  samples: readonly [Record<string, string>, number][],
) => void;

/** The gateway's machines, labelled by virtual endpoint (`node`). */
function renderGateway(gateway: GatewayReport, metric: MetricWriter): void {
  const { nodes } = gateway;
  metric(
    "gateway_provisions_total",
    "counter",
    "Provision calls forwarded to the relay, by outcome.",
    Object.entries(gateway.provisions).map(([outcome, value]) => [{ outcome }, value]),
  );
  metric(
    "gateway_lan_tls_failures_total",
    "counter",
    "LAN connections that failed the TLS handshake (a machine dialling plaintext, or not trusting the certificate).",
    [[{}, gateway.lanTlsFailures]],
  );
  metric(
    "gateway_machines",
    "gauge",
    "Machines with a relay tunnel, by how they reach the gateway.",
    (["grpc", "udp"] as const).map((mode) => [
      { mode },
      nodes.filter((node) => node.mode === mode).length,
    ]),
  );
  metric(
    "gateway_relay_connected",
    "gauge",
    "1 while a machine's relay tunnel is open.",
    nodes.map((node) => [{ node: node.virtual }, node.relay.state === "connected" ? 1 : 0]),
  );
  metric(
    "gateway_datagrams_total",
    "counter",
    "WireGuard datagrams carried for each machine.",
    nodes.flatMap((node): [Record<string, string>, number][] => [
      [{ node: node.virtual, direction: "from_machine" }, node.fromMachine.datagrams],
      [{ node: node.virtual, direction: "to_machine" }, node.toMachine.datagrams],
    ]),
  );
  metric(
    "gateway_bytes_total",
    "counter",
    "Bytes of WireGuard datagrams carried for each machine.",
    nodes.flatMap((node): [Record<string, string>, number][] => [
      [{ node: node.virtual, direction: "from_machine" }, node.fromMachine.bytes],
      [{ node: node.virtual, direction: "to_machine" }, node.toMachine.bytes],
    ]),
  );
  metric(
    "gateway_drops_total",
    "counter",
    "Datagrams dropped for each machine, by reason.",
    nodes.flatMap((node) =>
      Object.entries(node.drops).map(([reason, value]): [Record<string, string>, number] => [
        { node: node.virtual, reason },
        value,
      ]),
    ),
  );
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics on 127.0.0.1:`port` (0 picks one). */
export async function serveMetrics(
  port: number,
  snapshot: () => Promise<StatusSnapshot>,
): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    if (request.method !== "GET" || request.url !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end("try GET /metrics\n");
      return;
    }
    snapshot().then(
      (value) =>
        response
          .writeHead(200, { "content-type": PROMETHEUS_CONTENT_TYPE })
          .end(renderMetrics(value, Date.now())),
      (error: unknown) => response.writeHead(500).end(`${String(error)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
