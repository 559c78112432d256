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

const fixture = fileURLToPath(new URL("./fixtures/icmp-echo-tun.ts", import.meta.url));

describe("Linux TUN through the N-API addon", () => {
  let lab: Lab;
  let ns: Netns;
  let echo: LabProcess;
  const iface = `tun${process.pid % 100000}`;

  before(async () => {
    requirePrerequisites(["ip", "ping"]);
    lab = createLab("tuntest");
    ns = await lab.namespace("a");
    echo = ns.spawn(process.execPath, [fixture, iface, "1280"]);
    await echo.waitFor(/^open /, 5000);
    await ns.run("ip", ["address", "add", "10.202.0.1/24", "dev", iface]);
    await ns.run("ip", ["link", "set", iface, "up"]);
  });
  after(() => lab?.close());

  it("creates the named interface with the requested MTU", async () => {
    assert.equal(await echo.waitFor(/^open /, 1000), `open ${iface} mtu 1280`);
    const { stdout } = await ns.run("ip", ["-j", "link", "show", iface]);
    const [link] = JSON.parse(stdout);
    assert.equal(link.mtu, 1280);
    assert.ok(link.flags.includes("POINTOPOINT") && link.flags.includes("NOARP"));
  });

  it("reads the kernel's echo requests and writes replies the kernel accepts", async () => {
    const { stdout } = await ns.run("ping", ["-c", "5", "-i", "0.05", "-W", "2", "10.202.0.9"]);
    assert.match(stdout, /5 packets transmitted, 5 received/);
  });

  it("carries a flood of full-size packets through batched reads and writes", async () => {
    // 1252 bytes of payload make 1280-byte IP packets; -f keeps several in flight.
    const { stdout } = await ns.run(
      "ping",
      ["-f", "-c", "2000", "-s", "1252", "-W", "2", "10.202.0.9"],
      {
        timeoutMs: 20_000,
      },
    );
    assert.match(stdout, /2000 packets transmitted, 2000 received/);
  });

  it("notices the interface being deleted and closes", async () => {
    await ns.run("ip", ["link", "delete", iface]);
    assert.match(await echo.waitFor(/^gone after/, 5000), /^gone after 2005 replies$/);
    const { code } = await echo.exited;
    assert.equal(code, 0);
  });
});
