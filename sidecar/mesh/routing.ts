/**
 * The mesh role's routing, after WgLAN's rules manager: peers' mesh addresses and routed
 * prefixes go into routing table MESH_TABLE (180), and one `ip rule` per family sends every
 * packet without the mesh mark there. An nftables table marks the role's own traffic (its
 * WireGuard and probe UDP, by source port, and its TCP to the relay, by address and port) as
 * the packets leave, and the output route hook routes them again: they skip table 180 and leave
 * by the host's ordinary routes, even when a routed prefix covers the relay or a peer's endpoint.
 * Lookups that table 180 does not answer fall through to the main table.
 *
 * Everything is named after the interface and removed by `close()`.
 */
import { execFile } from "node:child_process";
import { ip } from "../net/iproute2.ts";

export const MESH_TABLE = 180;
/** The mark of the role's own packets; outside the bits kube-proxy and KubeSpan use. */
export const MESH_FWMARK = 0xb400;
/** Before the main table (32766), after the local table (0). */
export const MESH_RULE_PRIORITY = 32500;

export interface MeshRoutingOptions {
  readonly iface: string;
  /** The UDP ports the role sends from (WireGuard's, the kernel plane's probe socket). */
  readonly udpPorts: readonly number[];
  /** The relay's addresses (IPv4 or IPv6 text) and TCP port. */
  readonly relayAddresses: readonly string[];
  readonly relayPort: number;
}

export interface MeshRouting {
  /** Makes table 180 route exactly `prefixes` (CIDRs) through the interface. */
  setRoutes(prefixes: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export function nftTableName(iface: string): string {
  return `siderolink_mesh_${iface.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

export async function installMeshRouting(options: MeshRoutingOptions): Promise<MeshRouting> {
  const table = nftTableName(options.iface);
  const mark = `0x${MESH_FWMARK.toString(16)}`;
  const relayRules = options.relayAddresses.map(
    (address) =>
      `${address.includes(":") ? "ip6" : "ip"} daddr ${address} tcp dport ${options.relayPort} meta mark set ${mark}`,
  );
  const script = [
    `table inet ${table} {`,
    "  chain output {",
    "    type route hook output priority mangle; policy accept;",
    `    udp sport { ${options.udpPorts.join(", ")} } meta mark set ${mark}`,
    ...relayRules.map((rule) => `    ${rule}`),
    "  }",
    "}",
  ].join("\n");
  const installed: string[] = [];
  const routes = new Set<string>();
  const close = async (): Promise<void> => {
    for (const family of ["-4", "-6"]) {
      await ip([
        family,
        "rule",
        "del",
        "priority",
        String(MESH_RULE_PRIORITY),
        "table",
        String(MESH_TABLE),
      ]).catch(() => undefined);
      await ip([family, "route", "flush", "table", String(MESH_TABLE)]).catch(() => undefined);
    }
    if (installed.includes("nft"))
      await nft(["delete", "table", "inet", table]).catch(() => undefined);
  };
  try {
    await nft(["-f", "-"], script);
    installed.push("nft");
    for (const family of ["-4", "-6"]) {
      await ip([
        family,
        "rule",
        "add",
        "not",
        "fwmark",
        mark,
        "table",
        String(MESH_TABLE),
        "priority",
        String(MESH_RULE_PRIORITY),
      ]);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return {
    async setRoutes(prefixes) {
      const wanted = new Set(prefixes);
      for (const prefix of wanted) {
        if (routes.has(prefix)) continue;
        await ip(["route", "replace", prefix, "dev", options.iface, "table", String(MESH_TABLE)]);
        routes.add(prefix);
      }
      for (const prefix of routes) {
        if (wanted.has(prefix)) continue;
        await ip(["route", "del", prefix, "dev", options.iface, "table", String(MESH_TABLE)]).catch(
          () => undefined,
        );
        routes.delete(prefix);
      }
    },
    close,
  };
}

/** Runs `nft ARGS`, with `input` on standard input when given. */
function nft(args: readonly string[], input?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile("nft", args, { encoding: "utf8" }, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else if ((error as NodeJS.ErrnoException).code === "ENOENT")
        reject(new Error("the `nft` command is missing: install the Debian package nftables"));
      else reject(new Error(`nft ${args.join(" ")} failed: ${stderr.trim() || error.message}`));
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}
