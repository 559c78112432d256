import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createLab, type Lab, type Netns, requirePrerequisites, run } from "./netns.ts";

describe("network namespace lab", () => {
  let lab: Lab;
  let a: Netns;
  let b: Netns;

  before(async () => {
    requirePrerequisites(["ip", "nft", "ping"]);
    lab = createLab("nstest");
    a = await lab.namespace("a");
    b = await lab.namespace("b");
    await lab.link(a, "10.201.0.1/24", b, "10.201.0.2/24");
  });
  after(() => lab?.close());

  it("creates namespaces with names unique to the run", async () => {
    const { stdout } = await run("ip", ["netns", "list"]);
    assert.match(stdout, new RegExp(`^${a.name}\\b`, "m"));
    assert.match(a.name, new RegExp(`-${process.pid}-`));
    assert.notEqual(a.name, b.name);
  });

  it("links them with a veth pair that carries ping both ways", async () => {
    await a.run("ping", ["-c", "1", "-W", "2", "10.201.0.2"]);
    await b.run("ping", ["-c", "1", "-W", "2", "10.201.0.1"]);
  });

  it("blocks UDP on an interface and leaves TCP alone", async () => {
    const script = (code: string): string[] => ["-e", code];
    const udpServer = b.spawn(
      process.execPath,
      script(
        `const s=require("node:dgram").createSocket("udp4");s.on("message",m=>console.log("got",String(m)));s.bind(7001,()=>console.log("ready"))`,
      ),
    );
    await udpServer.waitFor(/ready/, 5000);
    const send = `const s=require("node:dgram").createSocket("udp4");s.send("ping-udp",7001,"10.201.0.2",()=>s.close())`;
    await a.run(process.execPath, script(send));
    await udpServer.waitFor(/got ping-udp/, 5000);

    await b.blockUdp("veth0p");
    await a.run(process.execPath, script(send));
    const tcpServer = b.spawn(
      process.execPath,
      script(
        `require("node:net").createServer(c=>c.on("data",d=>{console.log("tcp",String(d));c.end()})).listen(7002,()=>console.log("ready"))`,
      ),
    );
    await tcpServer.waitFor(/ready/, 5000);
    await a.run(
      process.execPath,
      script(`const c=require("node:net").connect(7002,"10.201.0.2",()=>c.end("ping-tcp"))`),
    );
    await tcpServer.waitFor(/tcp ping-tcp/, 5000);
    assert.equal(udpServer.output().match(/got ping-udp/g)?.length, 1, "UDP crossed the block");
  });

  it("removes its namespaces on close", async () => {
    const names = [a.name, b.name];
    await lab.close();
    const { stdout } = await run("ip", ["netns", "list"]);
    for (const name of names) assert.doesNotMatch(stdout, new RegExp(`^${name}\\b`, "m"));
  });
});
