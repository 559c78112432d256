import { execFile } from "node:child_process";

/**
 * Interface configuration through iproute2's `ip` command: addresses, MTU, link state, routes.
 * One process per change; these run at setup, never per packet.
 */

export class IpCommandError extends Error {
  readonly args: readonly string[];
  readonly stderr: string;
  constructor(args: readonly string[], stderr: string, cause?: unknown) {
    super(`ip ${args.join(" ")} failed: ${stderr.trim() || String(cause)}`, { cause });
    this.name = "IpCommandError";
    this.args = args;
    this.stderr = stderr;
  }
}

/** Runs `ip ARGS...` and resolves with its standard output. */
export function ip(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("ip", args, { encoding: "utf8" }, (error, stdout, stderr) => {
      if (error === null) {
        resolve(stdout);
        return;
      }
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        reject(new Error("the `ip` command is missing: install the Debian package iproute2"));
        return;
      }
      reject(new IpCommandError(args, stderr, error));
    });
  });
}

/** Adds an address in CIDR form, e.g. "10.0.0.1/24" or "fd00::1/64". */
export async function addAddress(iface: string, cidr: string): Promise<void> {
  await ip(["address", "add", cidr, "dev", iface]);
}

export async function setMtu(iface: string, mtu: number): Promise<void> {
  await ip(["link", "set", "dev", iface, "mtu", String(mtu)]);
}

export async function setLinkUp(iface: string): Promise<void> {
  await ip(["link", "set", "dev", iface, "up"]);
}

/** Routes a prefix to the interface (replacing a route to the same prefix). */
export async function addRoute(iface: string, cidr: string): Promise<void> {
  await ip(["route", "replace", cidr, "dev", iface]);
}

export async function deleteLink(iface: string): Promise<void> {
  await ip(["link", "delete", "dev", iface]);
}

export interface LinkInfo {
  name: string;
  index: number;
  mtu: number;
  up: boolean;
  addresses: string[];
}

/** The interface's state, or undefined when no interface of that name exists. */
export async function getLink(iface: string): Promise<LinkInfo | undefined> {
  let out: string;
  try {
    out = await ip(["-j", "address", "show", "dev", iface]);
  } catch (error) {
    if (error instanceof IpCommandError && /does not exist/.test(error.stderr)) return undefined;
    throw error;
  }
  const [link] = JSON.parse(out) as {
    ifname: string;
    ifindex: number;
    mtu: number;
    flags: string[];
    addr_info?: { local: string; prefixlen: number }[];
  }[];
  if (link === undefined) return undefined;
  return {
    name: link.ifname,
    index: link.ifindex,
    mtu: link.mtu,
    up: link.flags.includes("UP"),
    addresses: (link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`),
  };
}
