/** ping6 round trips inside a lab namespace. */
import type { Netns } from "../../test/netns/netns.ts";

export interface PingSample {
  /** Round-trip times of the replies, in milliseconds. */
  readonly rttMs: number[];
  readonly sent: number;
}

/** Sends `count` echo requests every `intervalS` seconds and collects each reply's RTT. */
export async function ping6(
  from: Netns,
  address: string,
  count: number,
  intervalS: number,
): Promise<PingSample> {
  const args = ["-6", "-n", "-c", String(count), "-i", String(intervalS), "-W", "2", address];
  // ping exits non-zero when a reply is lost; the replies it printed still count.
  const { stdout } = await from.run("sh", ["-c", 'ping "$@"; true', "ping", ...args], {
    timeoutMs: (count * intervalS + 15) * 1000,
  });
  const rttMs = [...stdout.matchAll(/time=([0-9.]+) ms/g)].map((m) => Number(m[1]));
  return { rttMs, sent: count };
}
