/** The parent's side of relay-child.ts: start, query, restart and stop a relay process. */
import { type ChildProcess, fork } from "node:child_process";
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { NetworkSecrets, NetworkSummary } from "../../../relay/app/networks.ts";
import type { HubMetrics } from "../../../relay/hub/metrics.ts";
import type { RelayServerOptions } from "../../../relay/node/server.ts";

const CHILD = fileURLToPath(new URL("./relay-child.ts", import.meta.url));
const START_TIMEOUT_MS = 15_000;

export interface HubStats {
  readonly nodes: number;
  readonly uplinks: number;
  readonly metrics: HubMetrics;
}

export interface RelayStats {
  readonly heapUsed: number;
  readonly rss: number;
  readonly hubs: Record<string, HubStats>;
}

export interface RelayProcessOptions extends Partial<RelayServerOptions> {
  readonly dataDir: string;
  readonly port?: number;
  readonly network?: string;
}

export class RelayProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly port: number;
  /** The network with its secrets (the child keeps them across restarts). */
  readonly network: (NetworkSummary & NetworkSecrets) | undefined;
  /** Everything the process wrote to stdout and stderr. */
  readonly log: string[];
  #nextId = 0;
  readonly #waiting = new Map<number, (value: unknown) => void>();

  private constructor(child: ChildProcess, ready: Ready, log: string[]) {
    this.child = child;
    this.url = ready.url;
    this.port = ready.port;
    this.network = ready.network;
    this.log = log;
    child.on("message", (message: { id: number }) => {
      this.#waiting.get(message.id)?.(message);
      this.#waiting.delete(message.id);
    });
  }

  static async start(options: RelayProcessOptions): Promise<RelayProcess> {
    const child = fork(CHILD, [JSON.stringify({ port: 0, ...options })], {
      execArgv: ["--expose-gc", "--no-warnings"],
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    const log: string[] = [];
    child.stderr?.on("data", (chunk: Buffer) => log.push(chunk.toString()));
    const ready = await new Promise<Ready>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(
          new Error(`relay process not listening after ${START_TIMEOUT_MS} ms: ${log.join("")}`),
        );
      }, START_TIMEOUT_MS);
      // The first line is the child's own report (it holds the network's secrets, for the
      // test); everything after it is the relay's output.
      child.stdout?.on("data", (chunk: Buffer) => {
        const text = chunk.toString();
        if (out.includes("\n")) {
          log.push(text);
          return;
        }
        out += text;
        const newline = out.indexOf("\n");
        if (newline >= 0) {
          clearTimeout(timer);
          if (newline + 1 < out.length) log.push(out.slice(newline + 1));
          resolve(JSON.parse(out.slice(0, newline)) as Ready);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`relay process exited with ${code} before listening: ${log.join("")}`));
      });
    });
    return new RelayProcess(child, ready, log);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Open file descriptors of the relay process. */
  fdCount(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  stats(): Promise<RelayStats> {
    return this.#request("stats") as Promise<RelayStats>;
  }

  /** Closes the relay cleanly and waits for the process to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    await Promise.race([this.#request("close"), exited]);
    await exited;
  }

  /** Kills the process without warning (a crash). */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }

  #request(type: string): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`relay process did not answer ${type}`)),
        10_000,
      );
      this.#waiting.set(id, (value) => {
        clearTimeout(timer);
        resolve(value);
      });
      this.child.send({ id, type });
    });
  }
}

interface Ready {
  readonly url: string;
  readonly port: number;
  readonly network?: NetworkSummary & NetworkSecrets;
}
