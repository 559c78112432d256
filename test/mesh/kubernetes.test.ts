/**
 * Kubernetes Node annotations as the mesh's second discovery source: the annotation formats
 * (the values Talos writes), the merge with relay records, and the Node watch driven through
 * @kubernetes/client-node against an HTTPS stand-in for the API server (test/mesh/support/
 * kube-api.ts) that checks the bearer token on every request.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { meshAddress, parseMeshPrefix } from "../../shared/mesh/address.ts";
import type { AffiliateRecord } from "../../shared/mesh/record.ts";
import { formatIP, formatPrefix, parseIP } from "../../shared/net/ip.ts";
import { formatKey } from "../../shared/siderolink/keys.ts";
import { createLogger } from "../../sidecar/log.ts";
import {
  loadKubeConfig,
  type NodeWatch,
  watchKubernetesNodes,
} from "../../sidecar/mesh/kubernetes-nodes.ts";
import {
  annotationsOf,
  ENDPOINTS_ANNOTATION,
  MESH_ADDRESS_ANNOTATION,
  NodeAnnotationError,
  type NodePeer,
  PUBLIC_KEY_ANNOTATION,
  peerFromAnnotations,
  ROUTED_PREFIXES_ANNOTATION,
} from "../../sidecar/mesh/node-annotations.ts";
import { mergePeer } from "../../sidecar/mesh/peer-sources.ts";
import { eventually } from "../support/eventually.ts";
import { type KubeApi, startKubeApi } from "./support/kube-api.ts";

const prefix = parseMeshPrefix("0200:1001::/64");
const key32 = (seed: number) => Uint8Array.from({ length: 32 }, (_, i) => (seed * 31 + i) & 0xff);
const ip = (text: string) => parseIP(text)!;

/** Annotations as a member with key `seed` writes them (Talos's value formats). */
function annotationsFor(seed: number, extra: Record<string, string> = {}): Record<string, string> {
  const key = key32(seed);
  return {
    [PUBLIC_KEY_ANNOTATION]: formatKey(key),
    [MESH_ADDRESS_ANNOTATION]: formatIP(meshAddress(prefix, key)),
    [ROUTED_PREFIXES_ANNOTATION]: "10.244.3.1/24",
    [ENDPOINTS_ANNOTATION]: "10.0.0.2:51820,192.168.3.4:51820",
    ...extra,
  };
}

describe("Node annotations", () => {
  it("reads Talos's formats: key, address, comma-separated prefixes and endpoints", () => {
    const peer = peerFromAnnotations(
      annotationsFor(1, {
        [ROUTED_PREFIXES_ANNOTATION]: "10.244.3.1/24,fd00:5::/64",
        [ENDPOINTS_ANNOTATION]: "10.0.0.2:51820,[2001:db8::7]:4500",
        "cluster.talos.dev/node-id": "29QQTc97U5ZyFTIX33Dp9NqtwxqQI8QI13scCLzffrZ",
      }),
      prefix,
    );
    assert.ok(peer);
    assert.deepEqual(peer.publicKey, key32(1));
    assert.deepEqual(peer.routedPrefixes.map(formatPrefix), ["10.244.3.0/24", "fd00:5::/64"]);
    assert.deepEqual(
      peer.endpoints.map((e) => [formatIP(e.address), e.port]),
      [
        ["10.0.0.2", 51820],
        ["2001:db8::7", 4500],
      ],
    );
  });

  it("gives no peer for a Node without the public key annotation", () => {
    assert.equal(peerFromAnnotations({ "node.alpha.kubernetes.io/ttl": "0" }, prefix), undefined);
    assert.equal(peerFromAnnotations(undefined, prefix), undefined);
  });

  it("empty lists, as Talos writes them, are no prefixes and no endpoints", () => {
    const peer = peerFromAnnotations(
      annotationsFor(2, { [ROUTED_PREFIXES_ANNOTATION]: "", [ENDPOINTS_ANNOTATION]: "" }),
      prefix,
    );
    assert.deepEqual([peer?.routedPrefixes.length, peer?.endpoints.length], [0, 0]);
  });

  const malformed: [string, Record<string, string>, RegExp][] = [
    ["a key that is not base64", { [PUBLIC_KEY_ANNOTATION]: "not a key!" }, /kubespan-public-key/],
    ["no address", { [MESH_ADDRESS_ANNOTATION]: undefined as unknown as string }, /is missing/],
    ["an address that is not one", { [MESH_ADDRESS_ANNOTATION]: "fd00::zz" }, /not an IP/],
    // Talos's own example: a KubeSpan address, derived from a MAC, not from the key.
    [
      "another member's address",
      { [MESH_ADDRESS_ANNOTATION]: "fd50:8d60:4238:6302:f857:23ff:fe21:d1e0" },
      /not the address of key/,
    ],
    ["a prefix with a bad length", { [ROUTED_PREFIXES_ANNOTATION]: "10.0.0.0/33" }, /assigned/],
    ["an endpoint without a port", { [ENDPOINTS_ANNOTATION]: "10.0.0.2" }, /kubespan-endpoints/],
    ["an endpoint with port 0", { [ENDPOINTS_ANNOTATION]: "10.0.0.2:0" }, /port 0/],
    ["a scoped endpoint", { [ENDPOINTS_ANNOTATION]: "[fe80::1%eth0]:51820" }, /scope/],
    [
      "too many prefixes",
      {
        [ROUTED_PREFIXES_ANNOTATION]: Array.from({ length: 33 }, (_, i) => `10.${i}.0.0/16`).join(),
      },
      /at most 32/,
    ],
  ];
  for (const [what, change, message] of malformed) {
    it(`refuses ${what}, naming the annotation`, () => {
      const annotations = annotationsFor(3, change);
      for (const [key, value] of Object.entries(annotations)) {
        if (value === undefined) delete annotations[key];
      }
      assert.throws(
        () => peerFromAnnotations(annotations, prefix),
        (error: unknown) => error instanceof NodeAnnotationError && message.test(error.message),
      );
    });
  }

  it("writes what it reads back", () => {
    const peer: NodePeer = {
      publicKey: key32(4),
      meshAddress: meshAddress(prefix, key32(4)),
      routedPrefixes: [{ address: ip("10.9.0.0"), bits: 16 }],
      endpoints: [
        { address: ip("192.0.2.1"), port: 51820 },
        { address: ip("2001:db8::1"), port: 51821 },
      ],
    };
    const written = annotationsOf(peer);
    assert.equal(written[ENDPOINTS_ANNOTATION], "192.0.2.1:51820,[2001:db8::1]:51821");
    assert.deepEqual(peerFromAnnotations(written, prefix), peer);
  });
});

describe("merging the relay's record and a Node's annotations", () => {
  const key = key32(5);
  const record: AffiliateRecord = {
    publicKey: key,
    meshAddress: meshAddress(prefix, key),
    listenPort: 51820,
    expiresAt: 2_000_000_000,
    routedPrefixes: [{ address: ip("10.1.0.0"), bits: 24 }],
    endpoints: [{ address: ip("10.0.0.2"), port: 51820 }],
  };
  const nodePeer: NodePeer = {
    publicKey: key,
    meshAddress: meshAddress(prefix, key),
    routedPrefixes: [{ address: ip("10.2.0.0"), bits: 24 }],
    endpoints: [
      { address: ip("10.0.0.2"), port: 51820 },
      { address: ip("198.51.100.9"), port: 51820 },
    ],
  };
  const observed = ip("::ffff:203.0.113.5");

  it("takes the relay's prefixes and every source's candidates once, relay first", () => {
    const merged = mergePeer({ record, observed }, { node: "n1", peer: nodePeer });
    assert.ok(merged);
    assert.deepEqual(merged.routedPrefixes.map(formatPrefix), ["10.1.0.0/24"]);
    assert.deepEqual(merged.candidates.map(String), [
      "10.0.0.2:51820",
      "203.0.113.5:51820",
      "198.51.100.9:51820",
    ]);
    assert.deepEqual(merged.sources, ["relay", "kubernetes"]);
  });

  it("uses the Node's prefixes while no relay record is held, and nothing without either", () => {
    const merged = mergePeer(undefined, { node: "n1", peer: nodePeer });
    assert.deepEqual(merged?.routedPrefixes.map(formatPrefix), ["10.2.0.0/24"]);
    assert.deepEqual(merged?.sources, ["kubernetes"]);
    assert.equal(mergePeer(undefined, undefined), undefined);
  });
});

describe("watching Nodes through the Kubernetes API", () => {
  let api: KubeApi;
  let watcher: NodeWatch | undefined;
  const logs: string[] = [];
  const log = createLogger("mesh", { write: (line) => logs.push(line), level: "debug" });
  /** The peers the watch reported, by Node name: their public keys. */
  const peers = new Map<string, NodePeer>();
  const keyOf = (node: string) => {
    const peer = peers.get(node);
    return peer === undefined ? undefined : formatKey(peer.publicKey);
  };
  const own: NodePeer = {
    publicKey: key32(9),
    meshAddress: meshAddress(prefix, key32(9)),
    routedPrefixes: [{ address: ip("10.244.9.0"), bits: 24 }],
    endpoints: [{ address: ip("192.0.2.9"), port: 51820 }],
  };

  before(async () => {
    api = await startKubeApi();
    api.setNode("alpha", annotationsFor(10));
    api.setNode("self", {});
    api.setNode("plain", { "node.alpha.kubernetes.io/ttl": "0" });
    watcher = watchKubernetesNodes(loadKubeConfig(api.kubeconfig), {
      prefix,
      nodeName: "self",
      publish: () => own,
      onPeer: (node, peer) => {
        if (peer === undefined) peers.delete(node);
        else peers.set(node, peer);
      },
      log,
      resyncMs: 3_000,
    });
  });
  after(async () => {
    await watcher?.close();
    await api.close();
  });

  it("lists the Nodes with the bearer token over TLS and turns annotations into peers", async () => {
    await eventually("alpha's peer", () => keyOf("alpha") === formatKey(key32(10)));
    assert.equal(peers.has("plain"), false);
    assert.equal(peers.has("self"), false, "this host's own Node is not a peer");
    const list = api.requests.find((r) => r.method === "GET" && r.url === "/api/v1/nodes");
    assert.ok(list, "the Nodes were listed");
    assert.equal(list.authorization, `Bearer ${api.token}`);
  });

  it("writes this member's annotations on its own Node with a merge patch", async () => {
    const written = await eventually("own annotations", () => {
      const annotations = api.node("self")?.metadata.annotations;
      return annotations?.[PUBLIC_KEY_ANNOTATION] ? annotations : undefined;
    });
    assert.deepEqual(peerFromAnnotations(written, prefix), own);
    const patch = api.requests.find((r) => r.method === "PATCH");
    assert.equal(patch?.url, "/api/v1/nodes/self");
    assert.equal(patch?.authorization, `Bearer ${api.token}`);
    assert.equal(patch?.contentType, "application/merge-patch+json");
  });

  it("follows the watch: a peer appears, changes, and goes with its annotations or Node", async () => {
    await eventually("a watch stream", () => api.watchers > 0);
    const watch = api.requests.find((r) => r.url.includes("watch=true"));
    assert.equal(watch?.authorization, `Bearer ${api.token}`);

    api.setNode("beta", annotationsFor(11));
    await eventually("beta added", () => keyOf("beta") === formatKey(key32(11)));

    api.setNode("beta", annotationsFor(11, { [ROUTED_PREFIXES_ANNOTATION]: "10.50.0.0/16" }));
    await eventually("beta's prefixes changed", () =>
      peers.get("beta")?.routedPrefixes.map(formatPrefix).join() === "10.50.0.0/16"
        ? true
        : undefined,
    );

    api.setNode("beta", { "node.alpha.kubernetes.io/ttl": "0" });
    await eventually("beta gone with its annotations", () => !peers.has("beta"));

    api.setNode("gamma", annotationsFor(12));
    await eventually("gamma added", () => peers.has("gamma"));
    api.deleteNode("gamma");
    await eventually("gamma gone with its Node", () => !peers.has("gamma"));
  });

  it("skips a malformed Node with a log line naming it, and takes it once fixed", async () => {
    api.setNode("broken", annotationsFor(13, { [ENDPOINTS_ANNOTATION]: "10.0.0.2:99999" }));
    const line = await eventually("the complaint", () =>
      logs.find((l) => l.includes("malformed") && l.includes('"node":"broken"')),
    );
    assert.match(line, /kubespan-endpoints/);
    assert.equal(peers.has("broken"), false);
    api.setNode("delta", annotationsFor(14));
    await eventually("a later Node still handled", () => peers.has("delta"));
    api.setNode("broken", annotationsFor(13));
    await eventually("broken taken once fixed", () => peers.has("broken"));
  });

  it("resumes a dropped watch and lists again when its version has expired (410)", async () => {
    api.dropWatches();
    api.setNode("epsilon", annotationsFor(15));
    await eventually("epsilon seen after the watch resumed", () => peers.has("epsilon"));
    const listsBefore = watcher!.lists;
    api.compact();
    api.dropWatches();
    api.setNodeSilently("zeta", annotationsFor(16));
    await eventually("zeta seen by a new list", () => peers.has("zeta"));
    assert.ok(watcher!.lists > listsBefore);
  });

  it("lists again every resync period, catching a change no event announced", async () => {
    api.setNodeSilently("eta", annotationsFor(17));
    await eventually("eta seen by the resync list", () => peers.has("eta"), 10_000);
  });

  it("logs an unreachable API server, keeps its peers, and catches up when it is back", async () => {
    const from = logs.length;
    await api.stop();
    await eventually(
      "the unreachable log line",
      () => logs.slice(from).some((l) => l.includes("Kubernetes API unreachable")),
      10_000,
    );
    assert.match(watcher!.state, /^(retrying|listing)$/);
    assert.ok(peers.has("alpha"), "peers from Kubernetes are kept while it is unreachable");
    api.setNodeSilently("theta", annotationsFor(18));
    api.deleteNode("alpha");
    await api.start();
    await eventually("theta after the API server came back", () => peers.has("theta"), 15_000);
    await eventually("alpha's deletion caught up", () => !peers.has("alpha"));
  });
});

describe("a kubeconfig with a wrong token", () => {
  it("gets no peers and logs the API server's refusal", async () => {
    const api = await startKubeApi();
    api.setNode("alpha", annotationsFor(20));
    const wrong = join(mkdtempSync(join(tmpdir(), "kubeconfig-")), "kubeconfig");
    writeFileSync(wrong, readFileSync(api.kubeconfig, "utf8").replace(api.token, "wrong-token"));
    const logs: string[] = [];
    const peers: string[] = [];
    const watcher = watchKubernetesNodes(loadKubeConfig(wrong), {
      prefix,
      nodeName: "self",
      onPeer: (node) => peers.push(node),
      log: createLogger("mesh", { write: (line) => logs.push(line) }),
    });
    try {
      const line = await eventually("the refusal", () => logs.find((l) => l.includes("HTTP 401")));
      assert.match(line, /Kubernetes API unreachable or refusing/);
      assert.doesNotMatch(line, /wrong-token/);
      assert.deepEqual(peers, []);
      assert.equal(api.requests[0]?.authorization, "Bearer wrong-token");
    } finally {
      await watcher.close();
      await api.close();
    }
  });
});

describe("a kubeconfig that cannot be used", () => {
  it("names the file", () => {
    assert.throws(() => loadKubeConfig("/nonexistent/kubeconfig"), /\/nonexistent\/kubeconfig/);
  });
});
