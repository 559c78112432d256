import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createLab,
  type Lab,
  type LabProcess,
  type Netns,
  requirePrerequisites,
} from "../netns/netns.ts";

const fixture = fileURLToPath(new URL("./fixtures/net-config.ts", import.meta.url));

describe("interface configuration through iproute2", { timeout: 30_000 }, () => {
  let lab: Lab;
  let ns: Netns;
  let driver: LabProcess;
  const iface = `nc${process.pid}`;
  const step = async (name: string) =>
    JSON.parse(await driver.waitFor(new RegExp(`"step":"${name}"`), 10_000));

  before(async () => {
    requirePrerequisites(["ip"]);
    lab = createLab("nettest");
    ns = await lab.namespace("a");
    driver = ns.spawn(process.execPath, [fixture, iface]);
  });
  after(() => lab?.close());

  it("sets addresses, MTU, link state and routes, and reads them back", async () => {
    const { link } = await step("configured");
    const [kernel] = JSON.parse(
      (await ns.run("ip", ["-j", "address", "show", "dev", iface])).stdout,
    );
    assert.equal(kernel.mtu, 1280);
    assert.ok(kernel.flags.includes("UP"));
    const addresses = kernel.addr_info
      .filter((a: { scope: string }) => a.scope === "global")
      .map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`);
    assert.deepEqual(addresses.sort(), ["10.230.0.1/24", "fd23::1/64"]);
    assert.deepEqual(
      { name: link.name, index: link.index, mtu: link.mtu, up: link.up },
      { name: iface, index: kernel.ifindex, mtu: 1280, up: true },
    );
    for (const address of addresses) assert.ok(link.addresses.includes(address), address);
    const routes = JSON.parse((await ns.run("ip", ["-j", "route", "show", "dev", iface])).stdout);
    assert.ok(
      routes.some((r: { dst: string }) => r.dst === "10.231.0.0/16"),
      JSON.stringify(routes),
    );
  });

  it("reports an MTU change and the deletion of the watched link", async () => {
    driver.child.kill("SIGUSR2");
    const { link } = await step("deleted");
    assert.equal(link, null);
    const events = driver
      .output()
      .split("\n")
      .filter((l) => l.includes('"step":"event"'))
      .map((l) => JSON.parse(l).event);
    assert.ok(
      events.some((e) => e.kind === "changed" && e.mtu === 1300),
      JSON.stringify(events),
    );
    assert.deepEqual(events.at(-1), { kind: "deleted" });
    await assert.rejects(ns.run("ip", ["link", "show", iface]), /does not exist/);
  });
});
