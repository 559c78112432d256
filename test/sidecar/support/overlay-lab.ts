/**
 * The namespace topology of the sidecar's end-to-end tests, and helpers that drive it the way
 * an operator would (the CLI, ping, status):
 *
 *   node (UDP dropped) --veth-- edge (Node relay) --veth-- mgmt (server sidecar)
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createLab,
  type Lab,
  type LabProcess,
  type Netns,
  requirePrerequisites,
} from "../../netns/netns.ts";
import { cliPath, nodeBinary } from "./cli.ts";

const relayFixture = fileURLToPath(new URL("../fixtures/relay.ts", import.meta.url));
export const RelayPort = 8787;
export const EdgeToMgmt = { edge: "10.91.0.1", mgmt: "10.91.0.2" };
export const EdgeToNode = { edge: "10.92.0.1", node: "10.92.0.2" };

export interface RelayInfo {
  url: string;
  apiUrl: string;
  joinToken: string;
  adminSecret: string;
  uplinkSecret: string;
  serverAddress: string;
}

export interface Status {
  role: string;
  up: boolean;
  pid: number;
  backend: string;
  transport: { kind: string; state: string; connects: number };
  addresses: { local: string | null; server: string | null };
  peers: {
    publicKey: string;
    address?: string;
    lastHandshakeAgeSeconds: number | null;
    rxBytes: number;
    txBytes: number;
  }[];
  /** The exit status of `status --json`. */
  exitCode: number;
}

export interface OverlayLab {
  readonly lab: Lab;
  readonly edge: Netns;
  readonly mgmt: Netns;
  readonly node: Netns;
  /** A temporary directory for state, run and relay data. */
  readonly work: string;
  /** Starts the relay in `edge` (TLS with `tls`); resolves with what it printed. */
  startRelay(tls?: {
    certFile: string;
    keyFile: string;
  }): Promise<{ process: LabProcess; info: RelayInfo }>;
  startServer(
    relay: RelayInfo,
    iface: string,
    extra?: readonly string[],
    scheme?: string,
  ): LabProcess;
  /**
   * `join` with the relay's API URL as the node sees it: on the command line, or with `config`
   * in a SideroLinkConfig document passed with --config.
   */
  startNode(
    relay: RelayInfo,
    iface: string,
    extra?: readonly string[],
    config?: boolean,
  ): LabProcess;
  /** The relay's API URL with the address the node reaches it at. */
  nodeApiUrl(relay: RelayInfo): string;
  status(ns: Netns, iface: string): Promise<Status>;
  /** Pings until a reply comes back (the first handshake may take a moment). */
  pingUntilReply(ns: Netns, address: string, attempts?: number): Promise<void>;
  close(): Promise<void>;
}

export async function createOverlayLab(prefix: string): Promise<OverlayLab> {
  requirePrerequisites(["ip", "nft", "ping", "wg", "wireguard-go"]);
  const work = mkdtempSync(join(tmpdir(), `sidecar-${prefix}-`));
  const lab = createLab(prefix);
  const edge = await lab.namespace("edge");
  const mgmt = await lab.namespace("mgmt");
  const node = await lab.namespace("node");
  await lab.link(edge, `${EdgeToMgmt.edge}/24`, mgmt, `${EdgeToMgmt.mgmt}/24`);
  const [, nodeIface] = await lab.link(
    edge,
    `${EdgeToNode.edge}/24`,
    node,
    `${EdgeToNode.node}/24`,
  );
  await node.blockUdp(nodeIface);
  const run = join(work, "run");

  const nodeApiUrl = (relay: RelayInfo): string =>
    relay.apiUrl.replace(/\/\/[^/?]+/, `//${EdgeToNode.edge}:${RelayPort}`);

  return {
    lab,
    edge,
    mgmt,
    node,
    work,
    async startRelay(tls) {
      const args = [relayFixture, "0.0.0.0", String(RelayPort), join(work, "relay"), "edge"];
      if (tls) args.push(tls.certFile, tls.keyFile);
      const process = edge.spawn(nodeBinary, args);
      const info = JSON.parse(await process.waitFor(/^\{/, 20_000)) as RelayInfo;
      return { process, info };
    },
    startServer(relay, iface, extra = [], scheme = "http") {
      return mgmt.spawn(nodeBinary, [
        cliPath,
        "serve",
        "--relay",
        `${scheme}://${EdgeToMgmt.edge}:${RelayPort}`,
        "--network",
        "edge",
        `--uplink-secret=${relay.uplinkSecret}`,
        `--admin-secret=${relay.adminSecret}`,
        "--iface",
        iface,
        // One management server: the relay pins its key at the first HELLO, so every server this
        // lab starts keeps the same state dir (and key).
        "--state",
        join(work, "state-server"),
        "--run-dir",
        run,
        ...extra,
      ]);
    },
    startNode(relay, iface, extra = [], config = false) {
      let source = [nodeApiUrl(relay)];
      if (config) {
        const file = join(work, `${iface}.yaml`);
        writeFileSync(
          file,
          `apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: ${JSON.stringify(nodeApiUrl(relay))}\n`,
        );
        source = ["--config", file];
      }
      return node.spawn(nodeBinary, [
        cliPath,
        "join",
        ...source,
        "--iface",
        iface,
        "--state",
        join(work, `state-${iface}`),
        "--run-dir",
        run,
        "--node-uuid",
        randomUUID(),
        ...extra,
      ]);
    },
    nodeApiUrl,
    async status(ns, iface) {
      const { stdout } = await ns.run("sh", [
        "-c",
        `"$0" "$1" status --json --iface "$2" --run-dir "$3"; echo "exit=$?"`,
        nodeBinary,
        cliPath,
        iface,
        run,
      ]);
      const exit = /exit=(\d+)\s*$/.exec(stdout);
      assert.ok(exit, `status printed no exit line: ${stdout}`);
      return { ...(JSON.parse(stdout.slice(0, exit.index)) as Status), exitCode: Number(exit[1]) };
    },
    async pingUntilReply(ns, address, attempts = 20) {
      let lastError: unknown;
      for (let attempt = 0; attempt < attempts; attempt++) {
        try {
          await ns.run("ping", ["-6", "-c", "1", "-W", "1", address]);
          return;
        } catch (error) {
          lastError = error;
        }
      }
      throw lastError;
    },
    async close() {
      await lab.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}
