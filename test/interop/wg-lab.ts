import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { LabProcess, Netns } from "../netns/netns.ts";
import { run } from "../netns/netns.ts";

/**
 * WireGuard devices in lab namespaces, started and configured the way an administrator would:
 * the device process, then `wg` for keys and peers and `ip` for addresses and link state.
 * Keys come from `wg genkey`, never from the code under test.
 */

export const cliPath = fileURLToPath(new URL("../../sidecar/cli.ts", import.meta.url));

export type DeviceKind = "ours" | "wireguard-go";

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

export async function generateKeyPair(): Promise<KeyPair> {
  const privateKey = (await run("wg", ["genkey"])).stdout.trim();
  const publicKey = await pipeToWg(["pubkey"], privateKey);
  return { privateKey, publicKey };
}

export async function generatePresharedKey(): Promise<string> {
  return (await run("wg", ["genpsk"])).stdout.trim();
}

function pipeToWg(args: string[], input: string): Promise<string> {
  return run("sh", ["-c", `printf '%s\\n' "$0" | wg ${args.join(" ")}`, input]).then((r) =>
    r.stdout.trim(),
  );
}

export interface PeerConfig {
  publicKey: string;
  allowedIps: string[];
  endpoint?: string;
  presharedKey?: string;
  persistentKeepalive?: number;
}

export interface WgDevice {
  readonly kind: DeviceKind;
  readonly iface: string;
  readonly ns: Netns;
  readonly process: LabProcess;
  /** `wg set IFACE private-key ... listen-port ...`. */
  setInterface(privateKey: string, listenPort: number): Promise<void>;
  /** `wg set IFACE peer ...` (adds or updates). */
  setPeer(peer: PeerConfig): Promise<void>;
  removePeer(publicKey: string): Promise<void>;
  /** `ip address add` each address, then `ip link set up`. */
  addressAndUp(addresses: string[]): Promise<void>;
  /** `wg show IFACE dump`, parsed. */
  dump(): Promise<WgDump>;
  stop(): Promise<void>;
}

export interface WgPeerStatus {
  publicKey: string;
  presharedKey: string;
  endpoint: string;
  allowedIps: string;
  /** Unix seconds; 0 when never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: string;
}

export interface WgDump {
  privateKey: string;
  publicKey: string;
  listenPort: number;
  peers: WgPeerStatus[];
}

let secretDir: string | undefined;

/** Writes a key to a mode-0600 file, since `wg set` reads keys only from files. */
function keyFile(key: string): string {
  secretDir ??= mkdtempSync(join(tmpdir(), "wg-lab-"));
  const path = join(secretDir, `${Math.random().toString(36).slice(2)}.key`);
  writeFileSync(path, `${key}\n`, { mode: 0o600 });
  return path;
}

export function removeKeyFiles(): void {
  if (secretDir !== undefined) rmSync(secretDir, { recursive: true, force: true });
  secretDir = undefined;
}

/**
 * Starts a device in the foreground and waits until `wg` can talk to it. Interface names must
 * differ across namespaces: both implementations keep their socket in /var/run/wireguard.
 */
export async function startDevice(kind: DeviceKind, ns: Netns, iface: string): Promise<WgDevice> {
  const child =
    kind === "ours"
      ? ns.spawn(process.execPath, [cliPath, "wireguard", "--foreground", iface])
      : ns.spawn("wireguard-go", ["-f", iface], { env: { LOG_LEVEL: "verbose" } });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await ns.run("wg", ["show", iface], { timeoutMs: 2000 });
      break;
    } catch (error) {
      if (child.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`${kind} did not come up on ${iface}; output:\n${child.output()}`, {
          cause: error,
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const wg = (args: string[]) => ns.run("wg", args, { timeoutMs: 5000 });
  return {
    kind,
    iface,
    ns,
    process: child,
    async setInterface(privateKey, listenPort) {
      await wg([
        "set",
        iface,
        "private-key",
        keyFile(privateKey),
        "listen-port",
        String(listenPort),
      ]);
    },
    async setPeer(peer) {
      const args = ["set", iface, "peer", peer.publicKey, "allowed-ips", peer.allowedIps.join(",")];
      if (peer.endpoint !== undefined) args.push("endpoint", peer.endpoint);
      if (peer.presharedKey !== undefined) {
        args.push("preshared-key", keyFile(peer.presharedKey));
      }
      if (peer.persistentKeepalive !== undefined) {
        args.push("persistent-keepalive", String(peer.persistentKeepalive));
      }
      await wg(args);
    },
    async removePeer(publicKey) {
      await wg(["set", iface, "peer", publicKey, "remove"]);
    },
    async addressAndUp(addresses) {
      for (const address of addresses) {
        await ns.run("ip", ["address", "add", address, "dev", iface]);
      }
      await ns.run("ip", ["link", "set", iface, "up"]);
    },
    async dump() {
      return parseDump((await wg(["show", iface, "dump"])).stdout);
    },
    stop: () => child.stop(),
  };
}

/** Parses `wg show IFACE dump`: one tab-separated line for the interface, one per peer. */
export function parseDump(text: string): WgDump {
  const [head, ...peerLines] = text.trim().split("\n");
  const [privateKey, publicKey, listenPort] = head.split("\t");
  return {
    privateKey,
    publicKey,
    listenPort: Number(listenPort),
    peers: peerLines.map((line) => {
      const [key, psk, endpoint, allowedIps, handshake, rx, tx, keepalive] = line.split("\t");
      return {
        publicKey: key,
        presharedKey: psk,
        endpoint,
        allowedIps,
        latestHandshake: Number(handshake),
        rxBytes: Number(rx),
        txBytes: Number(tx),
        persistentKeepalive: keepalive,
      };
    }),
  };
}
