import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";

/**
 * Network-namespace lab for tests that need real interfaces: namespaces with names unique to
 * this run, veth links between them, the UDP block, and processes run inside them. Everything
 * a lab created is removed by close(), and by a synchronous fallback at process exit if a
 * test dies first.
 *
 *   const lab = createLab("wgi");
 *   const a = await lab.namespace("a");
 *   const b = await lab.namespace("b");
 *   await lab.link(a, "10.0.0.1/24", b, "10.0.0.2/24");
 *   await a.run("ping", ["-c1", "10.0.0.2"]);
 *   const server = a.spawn("iperf3", ["-s"]);
 *   await lab.close();
 */

/** Debian package that provides each command the project's namespace tests use. */
const packageOf: Record<string, string> = {
  ip: "iproute2",
  nft: "nftables",
  wg: "wireguard-tools",
  "wireguard-go": "wireguard-go",
  iperf3: "iperf3",
  ping: "iputils-ping",
};

/**
 * Throws, naming what is missing, unless this process is root, /dev/net/tun exists and each
 * command is on PATH. Call it first in a suite: a missing prerequisite is a failure, not a skip.
 */
export function requirePrerequisites(commands: readonly string[]): void {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push("must run as root (network namespaces, TUN)");
  try {
    accessSync("/dev/net/tun", constants.R_OK | constants.W_OK);
  } catch {
    problems.push("/dev/net/tun is missing or not accessible");
  }
  const missing = commands.filter((command) => !onPath(command));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((c) => packageOf[c] ?? c))].join(" ");
    problems.push(
      `missing commands ${missing.join(", ")}: apt-get install -y --no-install-recommends ${packages}`,
    );
  }
  if (problems.length > 0) throw new Error(`prerequisites not met: ${problems.join("; ")}`);
}

function onPath(command: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    try {
      accessSync(`${dir}/${command}`, constants.X_OK);
      return true;
    } catch {}
  }
  return false;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Kills the command and rejects after this long; default 30 s. */
  timeoutMs?: number;
  /** Environment additions. */
  env?: Record<string, string>;
}

/** Runs a command to completion; rejects with its stderr when it exits non-zero. */
export function run(command: string, args: readonly string[], options: RunOptions = {}) {
  return new Promise<RunResult>((resolve, reject) => {
    execFile(
      command,
      args,
      {
        encoding: "utf8",
        timeout: options.timeoutMs ?? 30_000,
        maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, ...options.env },
      },
      (error, stdout, stderr) => {
        if (error === null) resolve({ stdout, stderr });
        else
          reject(
            new Error(`${command} ${args.join(" ")} failed: ${stderr.trim() || error.message}`, {
              cause: error,
            }),
          );
      },
    );
  });
}

/** A process started in a namespace, its output collected for assertions and failure messages. */
export interface LabProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the first output line matching `pattern`, or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface Netns {
  readonly name: string;
  run(command: string, args: readonly string[], options?: RunOptions): Promise<RunResult>;
  spawn(
    command: string,
    args: readonly string[],
    options?: { env?: Record<string, string> },
  ): LabProcess;
  /** Drops UDP in and out of `iface` (the suites' stand-in for a network that blocks UDP). */
  blockUdp(iface: string): Promise<void>;
}

export interface Lab {
  /** Creates a namespace named `<prefix>-<label>-<pid>-<n>` with loopback up. */
  namespace(label: string): Promise<Netns>;
  /**
   * Connects two namespaces with a veth pair and assigns each end an address (CIDR). Returns
   * the interface names, "veth<n>" inside each namespace.
   */
  link(a: Netns, aAddress: string, b: Netns, bAddress: string): Promise<[string, string]>;
  /** Stops every process the lab started and deletes its namespaces. Safe to call twice. */
  close(): Promise<void>;
}

let labCount = 0;

export function createLab(prefix: string): Lab {
  const id = `${prefix}-${process.pid}-${++labCount}`;
  const namespaces: string[] = [];
  const processes: LabProcess[] = [];
  let links = 0;
  const cleanupAtExit = (): void => {
    for (const p of processes) if (p.child.exitCode === null) p.child.kill("SIGKILL");
    for (const name of namespaces) {
      try {
        execFileSync("ip", ["netns", "delete", name], { stdio: "ignore" });
      } catch {}
    }
  };
  process.on("exit", cleanupAtExit);

  const makeNetns = (name: string): Netns => ({
    name,
    run: (command, args, options) => run("ip", ["netns", "exec", name, command, ...args], options),
    spawn(command, args, options = {}) {
      const started = startProcess(["netns", "exec", name, command, ...args], options.env);
      processes.push(started);
      return started;
    },
    async blockUdp(iface) {
      const rules =
        `table inet udpblock { ` +
        `chain in { type filter hook input priority 0; policy accept; iifname "${iface}" meta l4proto udp drop; }; ` +
        `chain out { type filter hook output priority 0; policy accept; oifname "${iface}" meta l4proto udp drop; }; }`;
      await run("ip", ["netns", "exec", name, "nft", rules]);
    },
  });

  return {
    async namespace(label) {
      const name = `${id}-${label}`;
      await run("ip", ["netns", "add", name]);
      namespaces.push(name);
      await run("ip", ["-n", name, "link", "set", "lo", "up"]);
      return makeNetns(name);
    },
    async link(a, aAddress, b, bAddress) {
      const n = links++;
      const aIface = `veth${n}`;
      const bIface = `veth${n}p`;
      await run("ip", [
        "-n",
        a.name,
        "link",
        "add",
        aIface,
        "type",
        "veth",
        "peer",
        "name",
        bIface,
        "netns",
        b.name,
      ]);
      for (const [ns, iface, address] of [
        [a.name, aIface, aAddress],
        [b.name, bIface, bAddress],
      ]) {
        // Duplicate address detection would hold IPv6 addresses back for a second or two.
        await run(
          "ip",
          ["-n", ns, "address", "add", address, "dev", iface, "nodad"].filter(
            (arg) => arg !== "nodad" || address.includes(":"),
          ),
        );
        await run("ip", ["-n", ns, "link", "set", iface, "up"]);
      }
      return [aIface, bIface];
    },
    async close() {
      await Promise.all(processes.map((p) => p.stop()));
      processes.length = 0;
      for (const name of namespaces.splice(0)) {
        await run("ip", ["netns", "delete", name]).catch(() => undefined);
      }
      process.off("exit", cleanupAtExit);
    },
  };
}

function startProcess(ipArgs: string[], env: Record<string, string> | undefined): LabProcess {
  const child = spawn("ip", ipArgs, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let output = "";
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  const onData = (chunk: Buffer): void => {
    const before = output.length;
    output += chunk.toString("utf8");
    const start = output.lastIndexOf("\n", before) + 1;
    const lines = output.slice(start).split("\n");
    for (const waiter of waiters) {
      const line = lines.find((l) => waiter.pattern.test(l));
      if (line !== undefined) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  const command = ipArgs.slice(3).join(" ");
  return {
    child,
    pid: child.pid ?? -1,
    output: () => output,
    waitFor(pattern, timeoutMs) {
      const seen = output.split("\n").find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          pattern,
          resolve: (line: string) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new Error(
              `${command}: no output matching ${pattern} within ${timeoutMs} ms; output:\n${output}`,
            ),
          );
        }, timeoutMs);
        waiters.add(waiter);
        void exited.then(({ code, signal }) => {
          if (!waiters.delete(waiter)) return;
          clearTimeout(timer);
          reject(
            new Error(
              `${command} exited (code ${code}, signal ${signal}) before printing ${pattern}; output:\n${output}`,
            ),
          );
        });
      });
    },
    exited,
    async stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
