/**
 * Traffic across the overlay, measured by independent tools: ping for reachability and round
 * trips, the TCP transfer fixture's SHA-256 of what each end saw for integrity and throughput.
 */
import type { LabProcess, Netns } from "../../netns/netns.ts";
import { nodeBinary } from "../../sidecar/support/cli.ts";
import { transferFixture } from "./topology.ts";

export const MiB = 1024 * 1024;

/** Pings once a second until a reply comes back (the first handshake may take a moment). */
export async function pingUntilReply(
  ns: Netns,
  address: string,
  attempts = 30,
  family: "-4" | "-6" = "-6",
): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      await ns.run("ping", [family, "-c", "1", "-W", "1", address]);
      return;
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`no ping reply from ${address} in ${ns.name} after ${attempts} tries`, {
    cause: lastError,
  });
}

export interface PingResult {
  readonly transmitted: number;
  readonly received: number;
  /** Average round trip in milliseconds, when any reply came. */
  readonly rttAvgMs: number | null;
}

/** `ping -6 -c COUNT`, parsed; never throws for lost replies. */
export async function ping(ns: Netns, address: string, count = 5): Promise<PingResult> {
  const { stdout } = await ns.run("sh", [
    "-c",
    'ping -6 -n -c "$1" -i 0.2 -W 1 "$2"; true',
    "ping",
    String(count),
    address,
  ]);
  const totals = /(\d+) packets transmitted, (\d+) received/.exec(stdout);
  if (!totals) throw new Error(`unexpected ping output:\n${stdout}`);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(stdout);
  return {
    transmitted: Number(totals[1]),
    received: Number(totals[2]),
    rttAvgMs: rtt ? Number(rtt[1]) : null,
  };
}

export interface TransferResult {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly sentSha256: string;
  readonly receivedSha256: string;
  readonly seconds: number;
}

/** A transfer under way: the receiver's progress lines tell how far it got. */
export interface RunningTransfer {
  readonly receiver: LabProcess;
  readonly done: Promise<TransferResult>;
}

/**
 * Sends `bytes` random bytes over TCP from `from` to `toAddress` (a listener in `to`); `mbit`
 * caps the rate so that a test can act while data flows.
 */
export async function startTransfer(
  from: Netns,
  to: Netns,
  toAddress: string,
  port: number,
  bytes: number,
  options: { mbit?: number; timeoutMs?: number } = {},
): Promise<RunningTransfer> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const receiver = to.spawn(nodeBinary, [transferFixture, "receive", toAddress, String(port)]);
  await receiver.waitFor(/^listening/, 15_000);
  const started = performance.now();
  const args = [transferFixture, "send", toAddress, String(port), String(bytes)];
  if (options.mbit !== undefined) args.push(String(options.mbit));
  const done = (async () => {
    const { stdout } = await from.run(nodeBinary, args, { timeoutMs });
    const receivedLine = await receiver.waitFor(/^received /, timeoutMs);
    const seconds = (performance.now() - started) / 1000;
    const sent = /sent (\d+) sha256 ([0-9a-f]+)/.exec(stdout);
    const received = /received (\d+) sha256 ([0-9a-f]+)/.exec(receivedLine);
    if (!sent || !received) throw new Error(`transfer output: ${stdout} / ${receivedLine}`);
    return {
      bytesSent: Number(sent[1]),
      bytesReceived: Number(received[1]),
      sentSha256: sent[2],
      receivedSha256: received[2],
      seconds,
    };
  })();
  return { receiver, done };
}

export async function transfer(
  from: Netns,
  to: Netns,
  toAddress: string,
  port: number,
  bytes: number,
): Promise<TransferResult> {
  return (await startTransfer(from, to, toAddress, port, bytes)).done;
}

/** Megabits per second of a transfer, for people reading a summary. */
export function throughputMbit(result: TransferResult): number {
  return (result.bytesReceived * 8) / 1e6 / result.seconds;
}
