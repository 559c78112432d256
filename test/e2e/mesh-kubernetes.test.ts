/**
 * The mesh member process with `--kubeconfig`, end to end in namespaces: members a and b on one
 * LAN (mesh-lab.ts), both on the userspace backend, with a relay URL that refuses every
 * connection, so the cluster's Nodes are their only discovery source. The API server is the
 * HTTPS stand-in (test/mesh/support/kube-api.ts) in this process, reached through a forwarder
 * in the edge namespace (test/e2e/fixtures/unix-forward.ts) at the edge's address on each
 * member's link.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_MESH_PREFIX, meshAddress, parseMeshPrefix } from "../../shared/mesh/address.ts";
import { formatIP } from "../../shared/net/ip.ts";
import { parseKey } from "../../shared/siderolink/keys.ts";
import {
  ENDPOINTS_ANNOTATION,
  MESH_ADDRESS_ANNOTATION,
  PUBLIC_KEY_ANNOTATION,
  ROUTED_PREFIXES_ANNOTATION,
} from "../../sidecar/mesh/node-annotations.ts";
import { MESH_TABLE } from "../../sidecar/mesh/routing.ts";
import { type KubeApi, startKubeApi } from "../mesh/support/kube-api.ts";
import type { LabProcess } from "../netns/netns.ts";
import { nodeBinary } from "../sidecar/support/cli.ts";
import { eventually } from "../support/eventually.ts";
import {
  createMeshLab,
  EdgeLinks,
  Lan,
  type MeshLab,
  type MeshStatus,
  PodCidrs,
  podAddress,
} from "./support/mesh-lab.ts";

const forwarder = fileURLToPath(new URL("fixtures/unix-forward.ts", import.meta.url));
const KUBE_PORT = 6443;
/** Nothing listens there: the relay source fails on every attempt. */
const CLOSED_PORT = 9;
type LanMember = keyof typeof Lan;
const MEMBERS: readonly LanMember[] = ["a", "b"];
const prefix = parseMeshPrefix(DEFAULT_MESH_PREFIX);
const literal = (text: string) => text.replace(/[.+/[\]]/g, "\\$&");

describe("mesh members discovering each other only through Kubernetes Nodes", {
  timeout: 180_000,
}, () => {
  let lab: MeshLab;
  let api: KubeApi;
  const socketDir = mkdtempSync(join(tmpdir(), "kube-forward-"));
  const members: Partial<Record<LanMember, LabProcess>> = {};
  const addresses: Partial<Record<LanMember, string>> = {};

  before(async () => {
    lab = await createMeshLab("node");
    api = await startKubeApi({ addresses: MEMBERS.map((name) => EdgeLinks[name].edge) });
    const socket = join(socketDir, "api.sock");
    await api.listenOnSocket(socket);
    const forward = lab.ns.edge.spawn(nodeBinary, [
      forwarder,
      "0.0.0.0",
      String(KUBE_PORT),
      socket,
    ]);
    await forward.waitFor(/^forwarding /, 30_000);
    // The kubelet registers each Node; the member only annotates its own.
    for (const name of MEMBERS) api.setNode(name, {});
    for (const name of MEMBERS) {
      const kubeconfig = api.kubeconfigFor(`https://${EdgeLinks[name].edge}:${KUBE_PORT}`);
      members[name] = lab.startMember(
        name,
        ["--wireguard", "userspace", "--kubeconfig", kubeconfig, "--node-name", name],
        { relay: `http://${EdgeLinks[name].edge}:${CLOSED_PORT}` },
      );
    }
    for (const name of MEMBERS) {
      await members[name]!.waitFor(/"mesh member up"/, 30_000);
      addresses[name] = (await lab.status(name)).addresses.local.replace(/\/128$/, "");
    }
  });
  after(async () => {
    await lab?.close();
    await api?.close();
    rmSync(socketDir, { recursive: true, force: true });
  });

  const peerOf = (status: MeshStatus, of: LanMember) =>
    status.peers.find((peer) => peer.meshAddress === addresses[of]);
  const table = async (from: LanMember, family: "-4" | "-6"): Promise<string> =>
    (await lab.ns[from].run("ip", [family, "route", "show", "table", String(MESH_TABLE)])).stdout;

  it("each member writes its key, address, pod prefix and LAN endpoint on its own Node, with the kubeconfig's token", async () => {
    for (const name of MEMBERS) {
      const annotations = await eventually(
        `${name}'s annotations on Node ${name}`,
        () => {
          const found = api.node(name)?.metadata.annotations ?? {};
          return PUBLIC_KEY_ANNOTATION in found ? found : undefined;
        },
        30_000,
        50,
      );
      const key = parseKey(annotations[PUBLIC_KEY_ANNOTATION]!, "annotation");
      assert.equal(formatIP(meshAddress(prefix, key)), addresses[name], "key derives the address");
      assert.equal(annotations[MESH_ADDRESS_ANNOTATION], addresses[name]);
      assert.equal(annotations[ROUTED_PREFIXES_ANNOTATION], PodCidrs[name]);
      assert.ok(
        annotations[ENDPOINTS_ANNOTATION]!.split(",").includes(`${Lan[name]}:51820`),
        `${name}'s endpoints ${annotations[ENDPOINTS_ANNOTATION]} include its LAN address`,
      );
      const patch = api.requests.find(
        (request) => request.method === "PATCH" && request.url === `/api/v1/nodes/${name}`,
      );
      assert.ok(patch, `${name} patched its Node`);
      assert.equal(patch.authorization, `Bearer ${api.token}`);
      assert.equal(patch.contentType, "application/merge-patch+json");
    }
  });

  it("each learns the other from the watch alone and reaches it directly on the LAN", async () => {
    for (const [from, to] of [
      ["a", "b"],
      ["b", "a"],
    ] as const) {
      const peer = await eventually(
        `${from} to reach ${to} directly, with a handshake`,
        async () => {
          const found = peerOf(await lab.status(from), to);
          return found?.path === "direct" && found.lastHandshake !== null ? found : undefined;
        },
        60_000,
        250,
      );
      assert.deepEqual(peer.sources, ["kubernetes"]);
      assert.deepEqual(peer.routedPrefixes, [PodCidrs[to]]);
      assert.match(peer.endpoint ?? "", new RegExp(`^${literal(Lan[to])}:51820$`));
      assert.equal(
        peer.publicKey,
        api.node(to)?.metadata.annotations?.[PUBLIC_KEY_ANNOTATION],
        `${from}'s peer has the key on Node ${to}`,
      );
      const status = await lab.status(from);
      assert.equal(status.up, false, "the relay source never connected");
      assert.equal(status.peers.length, 1);
    }
    assert.ok(
      api.requests.some(
        (request) => request.method === "GET" && /[?&]watch=(true|1)/.test(request.url),
      ),
      "the members watch /api/v1/nodes",
    );
  });

  it("a pings b's mesh address and pod address", async () => {
    await eventually(
      `a pings b's mesh address ${addresses.b}`,
      () => lab.ns.a.run("ping", ["-6", "-c1", "-W1", addresses.b!]).then(() => true),
      30_000,
      200,
    );
    await eventually(
      `a pings b's pod address ${podAddress("b")}`,
      () =>
        lab.ns.a
          .run("ping", ["-c1", "-W1", "-I", podAddress("a"), podAddress("b")])
          .then(() => true),
      30_000,
      200,
    );
  });

  it("deleting b's Node removes b from a, with its routes; b keeps a", async () => {
    assert.match(await table("a", "-6"), new RegExp(`^${literal(addresses.b!)} `, "m"));
    assert.match(await table("a", "-4"), new RegExp(`^${literal(PodCidrs.b)} `, "m"));
    api.deleteNode("b");
    await eventually(
      "a to drop b",
      async () => peerOf(await lab.status("a"), "b") === undefined,
      30_000,
      100,
    );
    await members.a!.waitFor(/"mesh peer removed"/, 10_000);
    await eventually(
      "a's table to lose b's routes",
      async () =>
        !(await table("a", "-6")).includes(addresses.b!) &&
        !(await table("a", "-4")).includes(PodCidrs.b),
      10_000,
      100,
    );
    await assert.rejects(lab.ns.a.run("ping", ["-6", "-c1", "-W1", addresses.b!]));
    assert.ok(peerOf(await lab.status("b"), "a"), "b still has a: Node a is still there");
  });
});
