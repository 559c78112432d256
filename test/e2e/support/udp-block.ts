/**
 * The firewall check: plain WireGuard over UDP (wireguard-go and wg, nothing of this project)
 * between the edge and another namespace. From the management host it handshakes, which shows
 * the configuration is right; from a node it must not, which shows the UDP block is real.
 */
import { join } from "node:path";
import type { Netns } from "../../netns/netns.ts";
import { run } from "../../netns/netns.ts";
import { pingUntilReply } from "./traffic.ts";

const ListenPort = 51820;

export interface PlainWireGuardResult {
  /** Whether a ping over the WireGuard link got a reply within a few tries. */
  readonly reached: boolean;
  /** `wg show IFACE latest-handshakes` on the client side: 0 means never. */
  readonly latestHandshake: number;
}

async function keyPair(work: string, name: string): Promise<{ file: string; publicKey: string }> {
  const file = join(work, `${name}.key`);
  await run("sh", ["-c", 'umask 077; wg genkey > "$0"', file]);
  const { stdout } = await run("sh", ["-c", 'wg pubkey < "$0"', file]);
  return { file, publicKey: stdout.trim() };
}

/**
 * Brings up wireguard-go in `edge` (listening on `edgeAddress`) and in `client`, pings across,
 * reports, and removes both interfaces.
 */
export async function plainWireGuard(
  work: string,
  edge: Netns,
  edgeAddress: string,
  client: Netns,
  suffix: string,
): Promise<PlainWireGuardResult> {
  const edgeIface = `wge${suffix}`;
  const clientIface = `wgc${suffix}`;
  const edgeKey = await keyPair(work, `${edgeIface}`);
  const clientKey = await keyPair(work, `${clientIface}`);
  try {
    await edge.run("wireguard-go", [edgeIface]);
    await edge.run("wg", [
      "set",
      edgeIface,
      "private-key",
      edgeKey.file,
      "listen-port",
      String(ListenPort),
      "peer",
      clientKey.publicKey,
      "allowed-ips",
      "10.200.0.2/32",
    ]);
    await edge.run("ip", ["address", "add", "10.200.0.1/24", "dev", edgeIface]);
    await edge.run("ip", ["link", "set", edgeIface, "up"]);
    await client.run("wireguard-go", [clientIface]);
    await client.run("wg", [
      "set",
      clientIface,
      "private-key",
      clientKey.file,
      "peer",
      edgeKey.publicKey,
      "endpoint",
      `${edgeAddress}:${ListenPort}`,
      "allowed-ips",
      "10.200.0.1/32",
    ]);
    await client.run("ip", ["address", "add", "10.200.0.2/24", "dev", clientIface]);
    await client.run("ip", ["link", "set", clientIface, "up"]);
    const reached = await pingUntilReply(client, "10.200.0.1", 4, "-4").then(
      () => true,
      () => false,
    );
    const { stdout } = await client.run("wg", ["show", clientIface, "latest-handshakes"]);
    return { reached, latestHandshake: Number(stdout.trim().split(/\s+/)[1] ?? 0) };
  } finally {
    // wireguard-go exits when its interface goes.
    await client.run("ip", ["link", "del", clientIface]).catch(() => undefined);
    await edge.run("ip", ["link", "del", edgeIface]).catch(() => undefined);
  }
}
