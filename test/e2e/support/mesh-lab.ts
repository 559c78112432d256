/**
 * The mesh end-to-end topology: a relay at the edge (a router between the sites), two members on
 * one LAN, a third whose UDP is dropped, and a fourth with another cluster's token.
 *
 *   a --LAN 10.96.0.0/24-- b
 *   |                      |
 *   +------ edge (relay, router) ------+
 *   |                                  |
 *   c (UDP dropped on its link)        d (wrong cluster token)
 *
 * a and b reach each other over their LAN only (like two hosts behind one NAT); c and the LAN
 * site reach each other's edge-link addresses through the edge's forwarding (the Internet path),
 * which c can use once its UDP block is lifted. Every member reaches the relay over TCP. Each member has a pod interface
 * (a veth pair) with the first address of its --pod-cidr.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createLab,
  type LabProcess,
  type Netns,
  requirePrerequisites,
  run,
} from "../../netns/netns.ts";
import { cliPath, nodeBinary, runCli } from "../../sidecar/support/cli.ts";
import { makeCertificates } from "../../support/certificates.ts";

export type MeshRelayKind = "node" | "worker";
export type MemberName = "a" | "b" | "c" | "d";
export const MEMBERS: readonly MemberName[] = ["a", "b", "c", "d"];

const nodeRelayFixture = fileURLToPath(new URL("../../sidecar/fixtures/relay.ts", import.meta.url));
const workerRelayFixture = fileURLToPath(new URL("../fixtures/worker-relay.ts", import.meta.url));

/** Each member's link to the edge: the edge's address and the member's. */
export const EdgeLinks: Record<MemberName, { edge: string; host: string; net: string }> = {
  a: { edge: "10.94.0.1", host: "10.94.0.2", net: "10.94.0.0/24" },
  b: { edge: "10.95.0.1", host: "10.95.0.2", net: "10.95.0.0/24" },
  c: { edge: "10.97.0.1", host: "10.97.0.2", net: "10.97.0.0/24" },
  d: { edge: "10.98.0.1", host: "10.98.0.2", net: "10.98.0.0/24" },
};
export const Lan = { a: "10.96.0.1", b: "10.96.0.2" } as const;
export const PodCidrs: Record<MemberName, string> = {
  a: "10.244.1.0/24",
  b: "10.244.2.0/24",
  c: "10.244.3.0/24",
  d: "10.244.4.0/24",
};
export const podAddress = (name: MemberName): string => PodCidrs[name].replace(/0\/24$/, "1");

export interface MeshPeerStatus {
  publicKey: string;
  endpoint: string | null;
  meshAddress: string;
  routedPrefixes: string[];
  /** Where the member learned the peer: "relay", "kubernetes" or both. */
  sources: string[];
  path: "direct" | "relay";
  lastHandshake: string | null;
  rxBytes: number;
  txBytes: number;
}

export interface MeshStatus {
  role: string;
  backend: string;
  up: boolean;
  addresses: { local: string };
  peers: MeshPeerStatus[];
  drops: Record<string, number>;
}

export interface MeshLab {
  readonly ns: Readonly<Record<MemberName | "edge", Netns>>;
  readonly ifaces: Readonly<Record<MemberName, string>>;
  /** The relay's URL as members reach it (over their edge link). */
  relayUrl(member: MemberName): string;
  /** The relay's process. */
  readonly relay: LabProcess;
  readonly clusterToken: string;
  /** Environment for a Node client in a member namespace to trust the relay's certificate. */
  readonly clientEnv: Record<string, string>;
  /** Starts a member's CLI; `relay` replaces the lab relay's URL (e.g. with one that fails). */
  startMember(
    name: MemberName,
    extra?: readonly string[],
    options?: { readonly relay?: string },
  ): LabProcess;
  status(name: MemberName): Promise<MeshStatus>;
  /** Lifts c's UDP block. */
  unblockC(): Promise<void>;
  close(): Promise<void>;
}

const RelayPort: Record<MeshRelayKind, number> = { node: 8787, worker: 8443 };

export async function createMeshLab(kind: MeshRelayKind): Promise<MeshLab> {
  requirePrerequisites(["ip", "nft", "ping", "wg", "wireguard-go", "openssl"]);
  const work = mkdtempSync(join(tmpdir(), `siderolink-mesh-${kind}-`));
  const lab = createLab(`mesh${kind[0]}`);
  const close = async (): Promise<void> => {
    await lab.close();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const edge = await lab.namespace("edge");
    const ns = { edge } as Record<MemberName | "edge", Netns>;
    const linkIface: Partial<Record<MemberName, string>> = {};
    for (const name of MEMBERS) {
      ns[name] = await lab.namespace(name);
      const [, iface] = await lab.link(
        edge,
        `${EdgeLinks[name].edge}/24`,
        ns[name],
        `${EdgeLinks[name].host}/24`,
      );
      linkIface[name] = iface;
    }
    await lab.link(ns.a, `${Lan.a}/24`, ns.b, `${Lan.b}/24`);
    await edge.run("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    // c and the LAN site reach each other's edge links through the edge (a and b, like two
    // hosts behind one NAT, only over their LAN); d only the edge itself.
    for (const [name, other] of [
      ["a", "c"],
      ["b", "c"],
      ["c", "a"],
      ["c", "b"],
    ] as const) {
      await ns[name].run("ip", ["route", "add", EdgeLinks[other].net, "via", EdgeLinks[name].edge]);
    }
    for (const name of MEMBERS) {
      // A stand-in for a pod network (this kernel has no dummy links): a veth pair in the member.
      await ns[name].run("ip", ["link", "add", "pod0", "type", "veth", "peer", "name", "pod0p"]);
      await ns[name].run("ip", ["address", "add", `${podAddress(name)}/24`, "dev", "pod0"]);
      await ns[name].run("ip", ["link", "set", "pod0", "up"]);
      await ns[name].run("ip", ["link", "set", "pod0p", "up"]);
    }
    await ns.c.blockUdp(linkIface.c!);

    const port = RelayPort[kind];
    let relayArgs: string[];
    let caArgs: string[] = [];
    if (kind === "node") {
      relayArgs = [nodeRelayFixture, "0.0.0.0", String(port), join(work, "relay"), "unused"];
    } else {
      const certificates = makeCertificates(
        work,
        Object.values(EdgeLinks).map((link) => link.edge),
      );
      relayArgs = [
        workerRelayFixture,
        "0.0.0.0",
        String(port),
        join(work, "relay"),
        "unused",
        certificates.cert,
        certificates.key,
      ];
      caArgs = ["--ca-file", certificates.ca];
    }
    const relay = edge.spawn(nodeBinary, relayArgs, {
      env: { SIDEROLINK_RELAY_OPERATOR_TOKEN: randomBytes(24).toString("base64url") },
    });
    await relay.waitFor(/^\{/, 60_000);

    const clusterToken = randomBytes(32).toString("base64");
    const tokenFile = join(work, "cluster.token");
    writeFileSync(tokenFile, `${clusterToken}\n`, { mode: 0o600 });
    const wrongTokenFile = join(work, "wrong.token");
    writeFileSync(wrongTokenFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
    const runDir = join(work, "run");
    // wireguard's UAPI sockets live in one global directory: names unique to this run.
    const tag = String(process.pid % 10000);
    const ifaces = Object.fromEntries(
      MEMBERS.map((name) => [name, `wgm${kind[0]}${tag}${name}`]),
    ) as Record<MemberName, string>;
    const scheme = kind === "node" ? "http" : "https";
    const relayUrl = (member: MemberName) => `${scheme}://${EdgeLinks[member].edge}:${port}`;

    return {
      ns,
      ifaces,
      relay,
      clusterToken,
      clientEnv: caArgs.length > 0 ? { NODE_EXTRA_CA_CERTS: caArgs[1] } : {},
      relayUrl,
      startMember(name, extra = [], options = {}) {
        return ns[name].spawn(nodeBinary, [
          cliPath,
          "mesh",
          "--relay",
          options.relay ?? relayUrl(name),
          "--cluster-token-file",
          name === "d" ? wrongTokenFile : tokenFile,
          "--iface",
          ifaces[name],
          "--pod-cidr",
          PodCidrs[name],
          "--state",
          join(work, `state-${name}`),
          "--run-dir",
          runDir,
          "--sweep-interval",
          "2",
          ...caArgs,
          ...extra,
        ]);
      },
      async status(name) {
        const result = await runCli([
          "status",
          "--json",
          "--iface",
          ifaces[name],
          "--run-dir",
          runDir,
        ]);
        if (!result.stdout.startsWith("{"))
          throw new Error(`status of ${name}: exit ${result.code}: ${result.stderr}`);
        return JSON.parse(result.stdout) as MeshStatus;
      },
      async unblockC() {
        await run("ip", ["netns", "exec", ns.c.name, "nft", "delete", "table", "inet", "udpblock"]);
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
