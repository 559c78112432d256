/**
 * Derives the load model's costs (model.ts Calibration) from measured figures: the rows that
 * `npm run bench` writes to bench/results/<date>.json for S3 (the relay in workerd, with
 * workerd's CPU share) and S6 (datagrams/s through one Durable Object per batch size).
 *
 * Derivation, with L the full datagram size of S3 (1312 bytes), B its large batch (64) and
 * S the small datagram size of S6 (128 bytes):
 *
 *   CPU per message at batch b   c(b) = median(workerd CPU share / messages per second), S3 part 2
 *   per datagram of L bytes      d(L) = (c(B) - c(1)) / (B - 1)
 *   per message                  m    = c(1) - d(L)
 *   per datagram of S bytes      d(S) = (1e6 / median(messages/s at batch B, S bytes) - m) / B,
 *                                from S6, where workerd had at most one core: an upper bound
 *   per byte                     (d(L) - d(S)) / (L - S); fixed part per datagram d(S) - S x that
 *   sender's messages/s          median(messages/s of the sidecars at full speed), S3 part 1:
 *                                the rate above which the sidecar's batches grow
 *   heap per connection          heap per idle tunnel at the largest count of S5 (the Node
 *                                relay with ws: workerd keeps hibernatable sockets outside the
 *                                isolate's heap, so for an object this overstates it)
 */
import type { Calibration } from "./model.ts";

export interface WorkerdCpuRow {
  readonly batch: number;
  readonly size: number;
  readonly messagesPerSecond: number;
  /** workerd's CPU during the run, as a share of one core. */
  readonly workerdCpu: number;
}

export interface SidecarRow {
  readonly messagesPerSecond: number;
  readonly datagramsPerMessage: number;
  readonly mbitPerSecond: number;
}

export interface ForwardingRow {
  readonly runtime: string;
  readonly batch: number;
  readonly size: number;
  readonly messagesPerSecond: number;
}

/** The measured rows the calibration reads. */
export interface MeasuredRows {
  /** S3 part 2: a load generator through the Durable Object in workerd, B datagrams a message. */
  readonly workerdCpu: readonly WorkerdCpuRow[];
  /** S3 part 1: the sidecars through the Durable Object at full speed. */
  readonly sidecar: readonly SidecarRow[];
  /** S6: one hub per runtime, B datagrams of 128 bytes a message. */
  readonly forwarding: readonly ForwardingRow[];
  /** S5: idle tunnels held by the Node relay. */
  readonly tunnels: readonly TunnelsRow[];
}

export interface TunnelsRow {
  readonly tunnels: number;
  readonly heapPerTunnel: number;
}

/** Each figure of the derivation, for printing next to the model's tables. */
export interface Derivation {
  readonly largeBytes: number;
  readonly smallBytes: number;
  readonly largeBatch: number;
  readonly cpuPerMessageBatch1Us: number;
  readonly cpuPerMessageLargeBatchUs: number;
  readonly perLargeDatagramUs: number;
  readonly wallPerSmallBatchUs: number;
  readonly perSmallDatagramUs: number;
  readonly sidecarDatagramsPerMessage: number;
  readonly sidecarMbps: number;
}

export interface CalibrationResult {
  readonly calibration: Calibration;
  readonly heapBytesPerConnection: number;
  readonly derivation: Derivation;
}

/** The rows the calibration needs from a parsed bench/results/<date>.json. */
export function measuredRows(results: unknown): MeasuredRows {
  const scenarios = (results as { scenarios?: Record<string, { data?: unknown }> }).scenarios;
  const s3 = scenarios?.s3?.data as { batching?: unknown; sidecar?: unknown } | undefined;
  const s5 = scenarios?.s5?.data as { tunnels?: unknown } | undefined;
  const s6 = scenarios?.s6?.data as { samples?: unknown } | undefined;
  if (!Array.isArray(s3?.batching) || !Array.isArray(s3?.sidecar)) {
    throw new Error(
      "the results hold no S3 rows (scenarios.s3.data.batching and .sidecar); run `npm run bench -- --only s3` first",
    );
  }
  if (!Array.isArray(s6?.samples)) {
    throw new Error(
      "the results hold no S6 rows (scenarios.s6.data.samples); run `npm run bench -- --only s6` first",
    );
  }
  if (!Array.isArray(s5?.tunnels)) {
    throw new Error(
      "the results hold no S5 rows (scenarios.s5.data.tunnels); run `npm run bench -- --only s5` first",
    );
  }
  return {
    workerdCpu: s3.batching as WorkerdCpuRow[],
    sidecar: s3.sidecar as SidecarRow[],
    forwarding: s6.samples as ForwardingRow[],
    tunnels: s5.tunnels as TunnelsRow[],
  };
}

export function calibrate(rows: MeasuredRows, maxBatch: number): CalibrationResult {
  const largeBatch = Math.max(...rows.workerdCpu.map((row) => row.batch));
  const cpuRows = (batch: number) => rows.workerdCpu.filter((row) => row.batch === batch);
  const largeBytes = single(
    rows.workerdCpu.map((row) => row.size),
    "datagram size of the S3 rows",
  );
  const cpuPerMessage = (batch: number): number =>
    median(
      cpuRows(batch).map((row) => (row.workerdCpu / row.messagesPerSecond) * 1e6),
      `S3 rows with batch ${batch}`,
    );
  const cpuPerMessageBatch1Us = cpuPerMessage(1);
  const cpuPerMessageLargeBatchUs = cpuPerMessage(largeBatch);
  const perLargeDatagramUs = (cpuPerMessageLargeBatchUs - cpuPerMessageBatch1Us) / (largeBatch - 1);
  const cpuPerMessageUs = cpuPerMessageBatch1Us - perLargeDatagramUs;

  const small = rows.forwarding.filter(
    (row) => row.runtime === "durable-object" && row.batch === largeBatch,
  );
  const smallBytes = single(
    small.map((row) => row.size),
    `datagram size of the S6 Durable Object rows with batch ${largeBatch}`,
  );
  const wallPerSmallBatchUs =
    1e6 /
    median(
      small.map((row) => row.messagesPerSecond),
      `S6 Durable Object rows with batch ${largeBatch}`,
    );
  const perSmallDatagramUs = (wallPerSmallBatchUs - cpuPerMessageUs) / largeBatch;
  const cpuPerByteUs = (perLargeDatagramUs - perSmallDatagramUs) / (largeBytes - smallBytes);
  const cpuPerDatagramUs = perSmallDatagramUs - smallBytes * cpuPerByteUs;
  if (!(cpuPerMessageUs > 0 && cpuPerByteUs > 0 && cpuPerDatagramUs >= 0)) {
    throw new Error(
      `the measured figures give no positive costs (per message ${cpuPerMessageUs} us, per datagram ${cpuPerDatagramUs} us, per byte ${cpuPerByteUs} us): rerun S3 and S6 on a quieter machine`,
    );
  }

  const sidecarRows = rows.sidecar;
  const mostTunnels = rows.tunnels.reduce<TunnelsRow | undefined>(
    (best, row) => (best === undefined || row.tunnels > best.tunnels ? row : best),
    undefined,
  );
  if (mostTunnels === undefined) throw new Error("no measured values for S5 idle tunnels");
  return {
    calibration: {
      cpuPerMessageUs,
      cpuPerDatagramUs,
      cpuPerByteUs,
      senderMessagesPerSecond: median(
        sidecarRows.map((row) => row.messagesPerSecond),
        "S3 sidecar rows",
      ),
      maxBatch,
    },
    heapBytesPerConnection: mostTunnels.heapPerTunnel,
    derivation: {
      largeBytes,
      smallBytes,
      largeBatch,
      cpuPerMessageBatch1Us,
      cpuPerMessageLargeBatchUs,
      perLargeDatagramUs,
      wallPerSmallBatchUs,
      perSmallDatagramUs,
      sidecarDatagramsPerMessage: median(
        sidecarRows.map((row) => row.datagramsPerMessage),
        "S3 sidecar rows",
      ),
      sidecarMbps: median(
        sidecarRows.map((row) => row.mbitPerSecond),
        "S3 sidecar rows",
      ),
    },
  };
}

export function median(values: readonly number[], what: string): number {
  if (values.length === 0) throw new Error(`no measured values for ${what}`);
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function single(values: readonly number[], what: string): number {
  const distinct = [...new Set(values)];
  if (distinct.length !== 1) {
    throw new Error(`expected one ${what}, found ${JSON.stringify(distinct)}`);
  }
  return distinct[0];
}
