/**
 * Point to point on the server's interface, for the kernel backend: an nftables table owned by
 * the sidecar, `inet siderolink_IFACE`, whose forward-hook chain drops every packet that came in
 * on the interface and would go out on it again, i.e. from one node to another through the
 * server host. A drop in any base chain is final in nftables, so rules of other tables (Docker,
 * Kubernetes, iptables-nft) that accept forwarded traffic do not undo it. The table is replaced
 * at start (a crashed run may have left it) and deleted on close.
 */
import { spawn } from "node:child_process";

export interface ForwardFilter {
  readonly table: string;
  remove(): Promise<void>;
}

/** Interface names as Linux allows them, minus what nft would need quoted differently. */
const IFACE_NAME = /^[A-Za-z0-9_.:-]{1,15}$/;

export function forwardFilterTable(iface: string): string {
  return `siderolink_${iface.replace(/[^A-Za-z0-9_]/g, "_")}`;
}

/** Installs the table; rejects naming nft's complaint (or its absence) when it cannot. */
export async function installForwardFilter(iface: string): Promise<ForwardFilter> {
  if (!IFACE_NAME.test(iface))
    throw new RangeError(`interface name ${JSON.stringify(iface)} cannot go into an nft rule`);
  const table = forwardFilterTable(iface);
  // "table" then "delete table" makes the replacement work whether or not it existed.
  await nft(`table inet ${table}
delete table inet ${table}
table inet ${table} {
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "${iface}" oifname "${iface}" counter drop comment "siderolink: nodes reach only the server"
  }
}
`);
  return {
    table,
    async remove() {
      await nft(`delete table inet ${table}\n`);
    },
  };
}

/** Runs an nft script from standard input. */
function nft(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("nft", ["-f", "-"], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "ENOENT"
          ? new Error(
              "the `nft` command is missing: install the Debian package nftables (the server's kernel backend needs it to keep nodes from reaching each other), or use --wireguard userspace",
            )
          : error,
      ),
    );
    child.once("close", (code) => {
      if (code === 0) resolve();
      else reject(new Error(`nft -f - failed (status ${code}): ${stderr.trim()}`));
    });
    child.stdin.end(script);
  });
}
