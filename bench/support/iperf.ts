/** iperf3 TCP runs inside lab namespaces, read from iperf3's JSON report. */
import type { Netns } from "../../test/netns/netns.ts";

export interface IperfSample {
  readonly mbitPerSecond: number;
  /** Bytes the receiving side counted. */
  readonly bytes: number;
}

/**
 * Runs `iperf3 -c address` from `client` for `seconds`; with `reverse` the server sends (-R).
 * A server must already listen at `address` (iperf3 -s).
 */
export async function iperf(
  client: Netns,
  address: string,
  seconds: number,
  reverse: boolean,
): Promise<IperfSample> {
  const args = ["-c", address, "-t", String(seconds), "-J"];
  if (reverse) args.push("-R");
  const { stdout } = await client.run("iperf3", args, { timeoutMs: (seconds + 30) * 1000 });
  const report = JSON.parse(stdout) as {
    end: { sum_received: { bytes: number; bits_per_second: number } };
  };
  const received = report.end.sum_received;
  return { mbitPerSecond: received.bits_per_second / 1e6, bytes: received.bytes };
}
