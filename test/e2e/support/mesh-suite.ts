/**
 * The mesh end-to-end suite (topology in mesh-lab.ts), run against one relay runtime, with some
 * members on the kernel backend (a wireguard-go interface configured with `wg`) and the rest on
 * the userspace one. With a and c on the kernel backend the cluster's pairs are kernel-userspace
 * over the LAN (a-b), kernel-kernel through the relay until c's block is lifted (a-c), and
 * userspace-kernel through the relay (b-c).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { clusterSecrets } from "../../../shared/mesh/cluster.ts";
import { openRecord } from "../../../shared/mesh/record.ts";
import { uapiSocketPath } from "../../../sidecar/wireguard/uapi-socket.ts";
import type { LabProcess } from "../../netns/netns.ts";
import { nodeBinary } from "../../sidecar/support/cli.ts";
import { eventually } from "../../support/eventually.ts";
import {
  createMeshLab,
  Lan,
  MEMBERS,
  type MemberName,
  type MeshLab,
  type MeshRelayKind,
  type MeshStatus,
  PodCidrs,
  podAddress,
} from "./mesh-lab.ts";

const CLUSTER: readonly MemberName[] = ["a", "b", "c"];

const KERNEL_ARGS = ["--wireguard", "kernel", "--wireguard-go", "wireguard-go"];

export interface MeshSuiteOptions {
  /** Members run with `--wireguard kernel --wireguard-go wireguard-go`. */
  readonly kernel?: readonly MemberName[];
}

export function describeMesh(kind: MeshRelayKind, suite: MeshSuiteOptions = {}): void {
  const kernel = new Set(suite.kernel ?? []);
  const backends = kernel.size === 0 ? "userspace" : `kernel on ${[...kernel].join(", ")}`;
  const runtime = kind === "node" ? "Node relay" : "Worker relay (workerd)";
  describe(`mesh across the ${runtime}, ${backends}`, { timeout: 240_000 }, () => {
    let lab: MeshLab;
    const members: Partial<Record<MemberName, LabProcess>> = {};
    const statuses: Partial<Record<MemberName, MeshStatus>> = {};

    before(async () => {
      lab = await createMeshLab(kind);
      for (const name of MEMBERS)
        members[name] = lab.startMember(name, kernel.has(name) ? KERNEL_ARGS : []);
      for (const name of MEMBERS) await members[name]!.waitFor(/"mesh member up"/, 30_000);
    });
    after(async () => {
      await lab?.close();
    });

    const peerOf = (status: MeshStatus, of: MeshStatus) =>
      status.peers.find((peer) => peer.meshAddress === of.addresses.local.replace(/\/128$/, ""));

    it("members of the cluster learn each other; the wrong token's member sees nothing and is seen by no one", async () => {
      for (const name of MEMBERS) statuses[name] = await lab.status(name);
      for (const name of MEMBERS) {
        assert.equal(statuses[name]!.backend, kernel.has(name) ? "kernel" : "userspace", name);
      }
      for (const name of CLUSTER) {
        await eventually(
          `${name} has two peers`,
          async () => (await lab.status(name)).peers.length === 2,
          40_000,
          100,
        );
      }
      for (const name of CLUSTER) {
        const status = await lab.status(name);
        for (const other of CLUSTER) {
          if (other === name) continue;
          const peer = peerOf(status, statuses[other]!);
          assert.ok(peer, `${name} has ${other} as a peer`);
          assert.deepEqual(peer.routedPrefixes, [PodCidrs[other]]);
        }
        assert.equal(peerOf(status, statuses.d!), undefined, `${name} does not see d`);
      }
      const d = await lab.status("d");
      assert.deepEqual(d.peers, [], "d sees no one");
      assert.ok(
        (d.drops.recordsRejected ?? 0) === 0,
        "d was not even sent the other cluster's records",
      );
    });

    it("every pair pings every mesh address and every pod prefix", async () => {
      for (const from of CLUSTER) {
        for (const to of CLUSTER) {
          if (from === to) continue;
          const meshAddress = statuses[to]!.addresses.local.replace(/\/128$/, "");
          await eventually(
            `${from} pings ${to}'s mesh address ${meshAddress}`,
            () => lab.ns[from].run("ping", ["-6", "-c1", "-W1", meshAddress]).then(() => true),
            60_000,
            200,
          );
          await eventually(
            `${from} pings ${to}'s pod address ${podAddress(to)}`,
            () =>
              lab.ns[from]
                .run("ping", ["-c1", "-W1", "-I", podAddress(from), podAddress(to)])
                .then(() => true),
            60_000,
            200,
          );
        }
      }
      // d's pod prefix is routed nowhere in the cluster.
      await assert.rejects(
        lab.ns.a.run("ping", ["-c1", "-W1", "-I", podAddress("a"), podAddress("d")]),
      );
    });

    it("a reaches b directly at its LAN endpoint and c through the relay, as status and wg show say", async () => {
      // A new peer starts on the relay and moves to a direct path once one answers: wait for
      // the settled state rather than read it once.
      const { b, c } = await eventually(
        "a to reach b directly and c through the relay, both with a handshake",
        async () => {
          const a = await lab.status("a");
          const b = peerOf(a, statuses.b!);
          const c = peerOf(a, statuses.c!);
          return b?.path === "direct" && c?.path === "relay" && b.lastHandshake && c.lastHandshake
            ? { b, c }
            : undefined;
        },
        60_000,
        250,
      );
      assert.equal(b?.path, "direct");
      assert.match(b?.endpoint ?? "", new RegExp(`^${Lan.b.replaceAll(".", "\\.")}:\\d+$`));
      assert.equal(c?.path, "relay");
      assert.match(c?.endpoint ?? "", /^\[100::/);
      assert.ok(b.lastHandshake && c.lastHandshake, "both handshakes done");
      assert.ok(b.rxBytes > 0 && c.rxBytes > 0);
      const { stdout } = await lab.ns.a.run("wg", ["show", lab.ifaces.a, "endpoints"]);
      assert.match(
        stdout,
        new RegExp(
          `${b.publicKey.replace(/[+/]/g, "\\$&")}\\s+${Lan.b.replaceAll(".", "\\.")}:\\d+`,
        ),
      );
      // The kernel interface reaches a relayed peer through the sidecar's loopback bridge.
      const relayed = kernel.has("a") ? "127\\.0\\.0\\.1:\\d+" : "\\[100::";
      assert.match(stdout, new RegExp(`${c.publicKey.replace(/[+/]/g, "\\$&")}\\s+${relayed}`));
    });

    it("the relay stores the records sealed: not readable without the token", async () => {
      const { clusterId, recordKey } = clusterSecrets(lab.clusterToken);
      const script = [
        "const r = await fetch(process.argv[1]);",
        "process.stdout.write(await r.text());",
      ].join("\n");
      const { stdout } = await lab.ns.a.run(
        nodeBinary,
        ["--input-type=module", "-e", script, `${lab.relayUrl("a")}/v1/mesh/${clusterId}/records`],
        { env: lab.clientEnv },
      );
      const { records } = JSON.parse(stdout) as { records: { member: string; record: string }[] };
      assert.equal(records.length, 3, "a, b and c published");
      const wrong = clusterSecrets(`${lab.clusterToken}x`);
      for (const stored of records) {
        const blob = Buffer.from(stored.record, "base64");
        const member = Buffer.from(stored.member, "hex");
        for (const name of CLUSTER) {
          const address = statuses[name]!.addresses.local.replace(/\/128$/, "");
          assert.equal(blob.toString("latin1").includes(address), false);
        }
        assert.throws(() => openRecord(wrong.recordKey, member, blob), /does not authenticate/);
        assert.ok(openRecord(recordKey, member, blob).publicKey.length === 32);
      }
    });

    it("c goes direct once its UDP block is lifted", async () => {
      await lab.unblockC();
      // Both ends move: a pins c's candidate once a probe answers, and c roams to a's packets
      // (or finds its own way). Until c has moved too, a packet on the old session may still be
      // dropped by a sweep on c's side, so traffic is asked of the settled pair.
      const direct = await eventually(
        "a's path to c and c's path to a become direct",
        async () => {
          const fromA = peerOf(await lab.status("a"), statuses.c!);
          const fromC = peerOf(await lab.status("c"), statuses.a!);
          return fromA?.path === "direct" && fromC?.path === "direct" ? fromA : undefined;
        },
        30_000,
        200,
      );
      assert.match(direct.endpoint ?? "", /^10\.97\.0\.2:\d+$/);
      const port = direct.endpoint?.split(":")[1];
      const onCandidate = new RegExp(`\\s10\\.97\\.0\\.2:${port}\\n`);
      const cAddress = statuses.c!.addresses.local.replace(/\/128$/, "");
      // A reply, with the interface still on c's candidate afterwards: the ping went direct,
      // not back through the relay's bridge.
      await eventually(
        `a pings ${cAddress} with c's endpoint on a still 10.97.0.2:${port}`,
        async () => {
          await lab.ns.a.run("ping", ["-6", "-c1", "-W1", cAddress]);
          const { stdout } = await lab.ns.a.run("wg", ["show", lab.ifaces.a, "endpoints"]);
          return onCandidate.test(stdout);
        },
        20_000,
        200,
      );
    });

    it("SIGTERM removes every route, rule and nftables table", async () => {
      for (const name of MEMBERS) {
        await members[name]!.stop(10_000);
        assert.equal((await members[name]!.exited).code, 0, `${name} exits 0`);
        const ns = lab.ns[name];
        const rules =
          (await ns.run("ip", ["-4", "rule"])).stdout + (await ns.run("ip", ["-6", "rule"])).stdout;
        assert.doesNotMatch(rules, /lookup 180/);
        for (const family of ["-4", "-6"]) {
          // An empty table 180 is one the kernel no longer has.
          const routes = await ns.run("ip", [family, "route", "show", "table", "180"]).then(
            ({ stdout }) => stdout.trim(),
            (error: Error) => (/table does not exist/.test(error.message) ? "" : error.message),
          );
          assert.equal(routes, "", `${name}: table 180 (${family}) is empty`);
        }
        assert.doesNotMatch((await ns.run("nft", ["list", "tables"])).stdout, /siderolink_mesh/);
        assert.doesNotMatch((await ns.run("ip", ["link"])).stdout, new RegExp(lab.ifaces[name]));
        // wireguard-go removes its configuration socket as it exits with its interface.
        assert.equal(existsSync(uapiSocketPath(lab.ifaces[name])), false, `${name}: no wg socket`);
      }
    });
  });
}
