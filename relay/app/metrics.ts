/** GET /metrics in the Prometheus text format (version 0.0.4). */
import { formatLabels } from "../../shared/prometheus.ts";
import { DROP_REASONS } from "../hub/metrics.ts";
import type { ProvisionCounts } from "./provision.ts";
import type { NetworkRuntime } from "./runtime.ts";

export function renderMetrics(
  runtimes: Iterable<NetworkRuntime>,
  provisions: ProvisionCounts,
): string {
  const families = new Map<
    string,
    { help: string; type: "gauge" | "counter"; samples: string[] }
  >();
  const sample = (
    name: string,
    help: string,
    type: "gauge" | "counter",
    labels: Record<string, string>,
    value: number,
  ) => {
    let family = families.get(name);
    if (!family) {
      family = { help, type, samples: [] };
      families.set(name, family);
    }
    family.samples.push(`${name}{${formatLabels(labels)}} ${value}`);
  };

  for (const runtime of runtimes) {
    const network = runtime.name;
    const { hub } = runtime;
    const m = hub.metrics;
    const connections = "siderolink_relay_connections";
    sample(connections, "Open streams by role.", "gauge", { network, role: "node" }, hub.nodeCount);
    sample(
      connections,
      "Open streams by role.",
      "gauge",
      { network, role: "uplink" },
      hub.uplinkCount,
    );
    sample(
      "siderolink_relay_queued_datagrams",
      "Datagrams waiting for congested streams.",
      "gauge",
      { network },
      hub.queuedDatagrams,
    );
    const datagrams = "siderolink_relay_datagrams_total";
    const datagramsHelp = "Datagrams forwarded, by direction.";
    sample(
      datagrams,
      datagramsHelp,
      "counter",
      { network, direction: "node_to_uplink" },
      m.nodeToUplinkDatagrams,
    );
    sample(
      datagrams,
      datagramsHelp,
      "counter",
      { network, direction: "uplink_to_node" },
      m.uplinkToNodeDatagrams,
    );
    const bytes = "siderolink_relay_bytes_total";
    const bytesHelp = "Datagram bytes forwarded, by direction.";
    sample(
      bytes,
      bytesHelp,
      "counter",
      { network, direction: "node_to_uplink" },
      m.nodeToUplinkBytes,
    );
    sample(
      bytes,
      bytesHelp,
      "counter",
      { network, direction: "uplink_to_node" },
      m.uplinkToNodeBytes,
    );
    for (const reason of DROP_REASONS) {
      sample(
        "siderolink_relay_drops_total",
        "Datagrams dropped, by reason.",
        "counter",
        { network, reason },
        m.drops[reason],
      );
    }
    sample(
      "siderolink_relay_malformed_frames_total",
      "Streams closed for a malformed or oversized frame.",
      "counter",
      { network },
      m.malformedFrames,
    );
    sample(
      "siderolink_relay_liveness_timeouts_total",
      "Streams closed for silence.",
      "counter",
      { network },
      m.livenessTimeouts,
    );
    const acks = "siderolink_relay_peer_acks_total";
    sample(
      acks,
      "Peer additions by uplink acknowledgement.",
      "counter",
      { network, result: "acked" },
      m.acks,
    );
    sample(
      acks,
      "Peer additions by uplink acknowledgement.",
      "counter",
      { network, result: "timeout" },
      m.ackTimeouts,
    );
  }
  for (const [code, value] of Object.entries(provisions)) {
    sample(
      "siderolink_relay_provisions_total",
      "Provision calls by result code.",
      "counter",
      { code },
      value,
    );
  }

  const lines: string[] = [];
  for (const [name, family] of families) {
    lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`, ...family.samples);
  }
  return `${lines.join("\n")}\n`;
}
