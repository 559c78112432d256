/**
 * The end-to-end topology: a relay at the edge, a management host, and two machines whose
 * networks drop every UDP datagram, each in its own network namespace.
 *
 *   node-a (UDP dropped) --veth--+
 *                                +-- edge (relay) --veth-- mgmt (server sidecar)
 *   node-b (UDP dropped) --veth--+
 *
 * The relay runs on Node (plain gRPC over HTTP/2 and WebSocket, like a self-hosted SideroLink
 * API) or as the Worker in workerd (Miniflare) over HTTPS with a test CA.
 * The relay is started and killed as a process of its own; sidecars run through their CLI only.
 * Everything here is removed by close(), and at process exit if a run dies first.
 */
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
import { cliPath, nodeBinary, runCli } from "../../sidecar/support/cli.ts";

export type RelayKind = "node" | "worker";

const nodeRelayFixture = fileURLToPath(new URL("../../sidecar/fixtures/relay.ts", import.meta.url));
const workerRelayFixture = fileURLToPath(new URL("../fixtures/worker-relay.ts", import.meta.url));
export const transferFixture = fileURLToPath(
  new URL("../../interop/fixtures/tcp-transfer.ts", import.meta.url),
);
export const talosMachineFixture = fileURLToPath(
  new URL("../fixtures/talos-machine.ts", import.meta.url),
);

/** The edge's address on each link, and the other end's. */
export const Links = {
  mgmt: { edge: "10.93.0.1", host: "10.93.0.2" },
  "node-a": { edge: "10.94.0.1", host: "10.94.0.2" },
  "node-b": { edge: "10.95.0.1", host: "10.95.0.2" },
  /** A site gateway's uplink (test/e2e/gateway.test.ts builds the site behind it). */
  site: { edge: "10.96.0.1", host: "10.96.0.2" },
} as const;
export type NodeName = "node-a" | "node-b";

/** The Node relay speaks plain gRPC (h2c) like a self-hosted SideroLink API; the Worker, HTTPS. */
const RelayPort: Record<RelayKind, number> = { node: 8787, worker: 8443 };
export const NetworkName = "edge";

export interface RelayInfo {
  url: string;
  apiUrl: string;
  joinToken: string;
  adminSecret: string;
  uplinkSecret: string;
  serverAddress: string;
}

export interface Relay {
  readonly kind: RelayKind;
  info: RelayInfo;
  process: LabProcess;
  /** The API URL a node passes to `join`, with the address it reaches the relay at. */
  apiUrl(node: NodeName, joinToken?: string): string;
  /** The relay's base URL from the management host, for `serve --relay`. */
  readonly serverUrl: string;
  /** Options every sidecar needs for this relay (the test CA for the Worker's HTTPS). */
  readonly tlsArgs: readonly string[];
  /** SIGKILLs the relay and everything it started (workerd), as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same storage. */
  restart(): Promise<void>;
  /** A call (GET unless `method`) to the admin API with the network's admin secret, from mgmt. */
  admin(path: string, method?: string): Promise<string>;
}

export interface Status {
  role: string;
  up: boolean;
  pid: number;
  backend: string;
  transport: {
    kind: string;
    choice: string;
    reason: string | null;
    state: string;
    connects: number;
  };
  addresses: { local: string | null; server: string | null; virtual: string | null };
  peers: {
    publicKey: string;
    address?: string;
    lastHandshakeAgeSeconds: number | null;
    rxBytes: number;
    txBytes: number;
  }[];
  drops: Record<string, number>;
}

export interface ServerOptions {
  readonly backend?: "userspace" | "kernel";
  /** More `serve` options, after the suite's own. */
  readonly extraArgs?: readonly string[];
}

export interface NodeOptions {
  backend: "userspace" | "kernel";
  transport?: "auto" | "websocket" | "grpc" | "http";
  nodeUuid: string;
  /** Overrides the network's join token. */
  joinToken?: string;
  /** The --state directory's name in the work dir (default: one per node namespace). */
  state?: string;
}

export interface Topology {
  readonly edge: Netns;
  readonly mgmt: Netns;
  readonly nodes: Readonly<Record<NodeName, Netns>>;
  readonly work: string;
  /** For namespaces of a test's own (removed with the rest by close()). */
  readonly lab: Lab;
  /** The test CA that signs the relay's certificate. */
  readonly caFile: string;
  /** Starts the relay; `tls` serves the Node relay over HTTPS with the test CA too. */
  startRelay(kind: RelayKind, options?: { tls?: boolean }): Promise<Relay>;
  /** The test CA (PEM) the relay's certificate chains to, and the certificate and key. */
  readonly certificates: { readonly ca: string; readonly cert: string; readonly key: string };
  /** `serve` in mgmt (userspace WireGuard unless told otherwise); `extraArgs` go last. */
  startServer(relay: Relay, iface: string, options?: ServerOptions): LabProcess;
  startNode(relay: Relay, node: NodeName, iface: string, options: NodeOptions): LabProcess;
  /** The sidecar arguments of `join` for a node, for running it to completion with runCli. */
  joinArgs(relay: Relay, node: NodeName, iface: string, options: NodeOptions): string[];
  /** Where every sidecar of the topology puts its status socket. */
  readonly runDir: string;
  status(iface: string): Promise<Status>;
  close(): Promise<void>;
}

export function nodeUuid(): string {
  return randomUUID();
}

export async function createTopology(prefix: string): Promise<Topology> {
  requirePrerequisites(["ip", "nft", "ping", "wg", "wireguard-go", "openssl"]);
  const work = mkdtempSync(join(tmpdir(), `siderolink-e2e-${prefix}-`));
  const lab = createLab(prefix);
  const close = async (): Promise<void> => {
    await lab.close();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const edge = await lab.namespace("edge");
    const mgmt = await lab.namespace("mgmt");
    const nodes = {
      "node-a": await lab.namespace("node-a"),
      "node-b": await lab.namespace("node-b"),
    };
    await lab.link(edge, `${Links.mgmt.edge}/24`, mgmt, `${Links.mgmt.host}/24`);
    for (const name of ["node-a", "node-b"] as const) {
      const [, iface] = await lab.link(
        edge,
        `${Links[name].edge}/24`,
        nodes[name],
        `${Links[name].host}/24`,
      );
      await nodes[name].blockUdp(iface);
    }
    const caFile = makeCertificates(work);
    const runDir = join(work, "run");

    const startRelay = async (kind: RelayKind, options: { tls?: boolean } = {}): Promise<Relay> => {
      const port = RelayPort[kind];
      const tls = kind === "worker" || options.tls === true;
      const data = join(work, `relay-${kind}`);
      const operatorToken = randomBytes(24).toString("base64url");
      const args =
        kind === "node"
          ? [nodeRelayFixture, "0.0.0.0", String(port), data, NetworkName].concat(
              tls ? [join(work, "relay.pem"), join(work, "relay.key")] : [],
            )
          : [
              workerRelayFixture,
              "0.0.0.0",
              String(port),
              data,
              NetworkName,
              join(work, "relay.pem"),
              join(work, "relay.key"),
            ];
      const launch = async (): Promise<{ process: LabProcess; info: RelayInfo }> => {
        const process = edge.spawn(nodeBinary, args, {
          env: { SIDEROLINK_RELAY_OPERATOR_TOKEN: operatorToken },
        });
        const info = JSON.parse(await process.waitFor(/^\{/, 60_000)) as RelayInfo;
        return { process, info };
      };
      const first = await launch();
      const scheme = tls ? "https" : "http";
      const relay: Relay = {
        kind,
        ...first,
        apiUrl(node, joinToken) {
          const url = new URL(relay.info.apiUrl);
          url.host = `${Links[node].edge}:${port}`;
          if (joinToken !== undefined) url.searchParams.set("jointoken", joinToken);
          return url.toString();
        },
        serverUrl: `${scheme}://${Links.mgmt.edge}:${port}`,
        tlsArgs: tls ? ["--ca-file", caFile] : [],
        async kill() {
          if (relay.process.child.exitCode === null) killTree(relay.process.pid);
          await relay.process.exited;
        },
        async restart() {
          Object.assign(relay, await launch());
        },
        async admin(path, method = "GET") {
          const script = [
            "const [url, secret, method] = process.argv.slice(1);",
            'const r = await fetch(url, { method, headers: { authorization: "Bearer " + secret } });',
            'if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));',
            "process.stdout.write(await r.text());",
          ].join("\n");
          const { stdout } = await mgmt.run(
            nodeBinary,
            [
              "--input-type=module",
              "-e",
              script,
              `${relay.serverUrl}${path}`,
              relay.info.adminSecret,
              method,
            ],
            { env: tls ? { NODE_EXTRA_CA_CERTS: caFile } : {} },
          );
          return stdout;
        },
      };
      return relay;
    };

    const joinArgs = (relay: Relay, node: NodeName, iface: string, options: NodeOptions) => [
      "join",
      relay.apiUrl(node, options.joinToken),
      "--iface",
      iface,
      "--state",
      join(work, options.state ?? `state-${node}`),
      "--run-dir",
      runDir,
      "--node-uuid",
      options.nodeUuid,
      "--wireguard",
      options.backend,
      ...(options.backend === "kernel" ? ["--wireguard-go", "wireguard-go"] : []),
      "--transport",
      options.transport ?? "auto",
      ...relay.tlsArgs,
    ];

    return {
      edge,
      mgmt,
      nodes,
      work,
      lab,
      caFile,
      certificates: {
        ca: caFile,
        cert: join(work, "relay.pem"),
        key: join(work, "relay.key"),
      },
      startRelay,
      startServer(relay, iface, { backend = "userspace", extraArgs = [] } = {}) {
        return mgmt.spawn(nodeBinary, [
          cliPath,
          "serve",
          "--relay",
          relay.serverUrl,
          "--network",
          NetworkName,
          `--uplink-secret=${relay.info.uplinkSecret}`,
          `--admin-secret=${relay.info.adminSecret}`,
          "--iface",
          iface,
          "--state",
          join(work, "state-mgmt"),
          "--run-dir",
          runDir,
          "--wireguard",
          backend,
          ...(backend === "kernel" ? ["--wireguard-go", "wireguard-go"] : []),
          ...relay.tlsArgs,
          ...extraArgs,
        ]);
      },
      startNode(relay, node, iface, options) {
        return nodes[node].spawn(nodeBinary, [cliPath, ...joinArgs(relay, node, iface, options)]);
      },
      joinArgs,
      runDir,
      async status(iface) {
        const result = await runCli(["status", "--json", "--iface", iface, "--run-dir", runDir]);
        if (!result.stdout.startsWith("{"))
          throw new Error(`status --iface ${iface}: exit ${result.code}: ${result.stderr}`);
        return JSON.parse(result.stdout) as Status;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** SIGKILLs `pid` and all its descendants (the Worker relay's workerd is a child process). */
function killTree(pid: number): void {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Field 4 of /proc/PID/stat is the parent; the command name before it may hold spaces.
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {}
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  for (const member of tree) {
    try {
      process.kill(member, "SIGKILL");
    } catch {}
  }
}

/** A test CA and a relay certificate for the edge's addresses on every link, with openssl. */
function makeCertificates(dir: string): string {
  const path = (name: string) => join(dir, name);
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl(
    ["req", "-x509", ...ec, "-keyout", path("ca.key"), "-out", path("ca.pem")].concat([
      "-days",
      "2",
      "-subj",
      "/CN=siderolink-edge e2e test CA",
    ]),
  );
  openssl(
    ["req", ...ec, "-keyout", path("relay.key"), "-out", path("relay.csr")].concat([
      "-subj",
      "/CN=relay",
    ]),
  );
  const names = Object.values(Links).map((link) => `IP:${link.edge}`);
  writeFileSync(path("relay.ext"), `subjectAltName=${names.join(",")}\n`);
  openssl([
    "x509",
    "-req",
    "-in",
    path("relay.csr"),
    "-CA",
    path("ca.pem"),
    "-CAkey",
    path("ca.key"),
    "-CAcreateserial",
    "-out",
    path("relay.pem"),
    "-days",
    "2",
    "-extfile",
    path("relay.ext"),
  ]);
  return path("ca.pem");
}
