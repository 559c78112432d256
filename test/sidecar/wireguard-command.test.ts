import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { cliPath } from "../interop/wg-lab.ts";
import { createLab, type Lab, type Netns, requirePrerequisites, run } from "../netns/netns.ts";
import { eventually } from "../support/eventually.ts";

const node = process.execPath;

describe("siderolink-sidecar command line", () => {
  it("explains its commands with --help", async () => {
    const { stdout } = await run(node, [cliPath, "--help"]);
    assert.match(stdout, /Usage: siderolink-sidecar COMMAND/);
    assert.match(stdout, /wireguard +run a userspace WireGuard interface/);
    const sub = await run(node, [cliPath, "wireguard", "--help"]);
    assert.match(sub.stdout, /Usage: siderolink-sidecar wireguard \[--foreground\] IFACE/);
  });

  it("rejects an unknown command and a bad interface name with exit status and reason", async () => {
    await assert.rejects(run(node, [cliPath, "nonsense"]), /unknown command "nonsense"/);
    await assert.rejects(
      run(node, [cliPath, "wireguard", "--foreground", "name-longer-than-15"]),
      /invalid interface name "name-longer-than-15"/,
    );
  });
});

describe("siderolink-sidecar wireguard IFACE", { timeout: 60_000 }, () => {
  let lab: Lab;
  let ns: Netns;
  const iface = (n: number) => `wc${process.pid}x${n}`;
  const socket = (name: string) => `/var/run/wireguard/${name}.sock`;
  const linkExists = (name: string) =>
    ns.run("ip", ["link", "show", name]).then(
      () => true,
      () => false,
    );

  before(async () => {
    requirePrerequisites(["ip", "wg"]);
    lab = createLab("wgcmd");
    ns = await lab.namespace("a");
  });
  after(async () => {
    // The daemon is detached from this test: deleting its interface is what stops it.
    await ns?.run("ip", ["link", "delete", iface(1)]).catch(() => undefined);
    await lab?.close();
  });

  it("daemonizes once the interface and socket exist, and exits when the interface is deleted", async () => {
    const name = iface(1);
    await ns.run(node, [cliPath, "wireguard", name], { timeoutMs: 20_000 });
    assert.ok(await linkExists(name), "interface exists when the command returns");
    assert.ok(existsSync(socket(name)), "socket exists when the command returns");
    const { stdout } = await ns.run("wg", ["show", name, "listen-port"]);
    assert.match(stdout, /^\d+\n$/);

    await ns.run("ip", ["link", "delete", name]);
    await eventually("daemon removes its socket", () => !existsSync(socket(name)));
  });

  it("runs in the foreground until SIGTERM, then removes its socket and interface", async () => {
    const name = iface(2);
    const device = ns.spawn(node, [cliPath, "wireguard", "--foreground", name]);
    await device.waitFor(/serving configuration on/, 10_000);
    assert.ok(existsSync(socket(name)));
    await ns.run("wg", ["set", name, "listen-port", "51999"]);
    assert.equal((await ns.run("wg", ["show", name, "listen-port"])).stdout, "51999\n");

    device.child.kill("SIGTERM");
    assert.deepEqual(await device.exited, { code: 0, signal: null });
    assert.match(device.output(), /shutting down: received SIGTERM/);
    assert.ok(!existsSync(socket(name)), "socket removed");
    assert.ok(!(await linkExists(name)), "interface removed");
  });

  it("refuses to start twice on one interface, naming it", async () => {
    const name = iface(3);
    const first = ns.spawn(node, [cliPath, "wireguard", "--foreground", name]);
    await first.waitFor(/serving configuration on/, 10_000);
    await assert.rejects(
      ns.run(node, [cliPath, "wireguard", "--foreground", name]),
      new RegExp(`TUNSETIFF ${name}: Device or resource busy`),
    );
    assert.ok(existsSync(socket(name)), "the first device keeps its socket");
    await first.stop();
  });
});
