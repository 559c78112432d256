import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import { after, describe, it } from "node:test";
import { formatIP, parseIP } from "../../shared/net/ip.ts";
import type { Endpoint } from "../../shared/wireguard/bind.ts";
import { parseUdpEndpoint } from "../../sidecar/bind/endpoint.ts";
import { createUdpBind, type UdpBind } from "../../sidecar/bind/udp.ts";

describe("UDP endpoints in wg's notation", () => {
  it("parses and formats IPv4 and IPv6 endpoints", () => {
    const v4 = parseUdpEndpoint("192.0.2.1:51820");
    assert.equal(v4.key, "192.0.2.1:51820");
    assert.deepEqual([...v4.addressBytes], [192, 0, 2, 1]);
    const v6 = parseUdpEndpoint("[FD00:0:0:0:0:0:0:1]:51820");
    assert.equal(v6.toString(), "[fd00::1]:51820");
    assert.equal(v6.addressBytes.length, 16);
    assert.equal(parseUdpEndpoint("[fe80::1%eth0]:7").key, "[fe80::1%eth0]:7");
  });

  it("treats IPv4-mapped IPv6 as the IPv4 endpoint", () => {
    assert.equal(parseUdpEndpoint("[::ffff:10.0.0.1]:9").key, "10.0.0.1:9");
  });

  it("formats IPv6 as RFC 5952 does", () => {
    const cases: [string, string][] = [
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
      ["0:0:0:0:0:0:0:0", "::"],
      ["fdae:41e4:649b:9303:0:0:0:1", "fdae:41e4:649b:9303::1"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ];
    for (const [input, want] of cases) assert.equal(formatIP(parseIP(input)!), want);
  });

  it("rejects what wg would not write, naming the text", () => {
    for (const bad of [
      "192.0.2.1",
      "192.0.2.256:1",
      "[fd00::1]51820",
      "1.2.3.4:65536",
      "[1::2::3]:1",
    ]) {
      assert.throws(
        () => parseUdpEndpoint(bad),
        new RegExp(`invalid endpoint "${bad.replace(/[[\]]/g, "\\$&")}"`),
      );
    }
  });
});

describe("UDP bind on loopback", () => {
  const binds: UdpBind[] = [];
  const sockets: Socket[] = [];
  after(async () => {
    await Promise.all(binds.map((b) => b.close()));
    for (const s of sockets) s.close();
  });

  async function openBind(host?: string) {
    const bind = createUdpBind({ port: 0, host });
    const received: { data: string; from: Endpoint }[] = [];
    let notify = (): void => {};
    await bind.open((datagrams, from) => {
      for (const d of datagrams) received.push({ data: Buffer.from(d).toString(), from });
      notify();
    });
    binds.push(bind);
    const waitFor = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`got ${received.length} of ${n} datagrams`)),
          2000,
        );
        notify = () => {
          if (received.length >= n) {
            clearTimeout(timer);
            resolve();
          }
        };
        notify();
      });
    return { bind, received, waitFor };
  }

  it("listens on a random port and receives from IPv4 and IPv6 senders", async () => {
    const { bind, received, waitFor } = await openBind();
    assert.ok(bind.port > 0);
    const v4 = createSocket("udp4");
    const v6 = createSocket("udp6");
    sockets.push(v4, v6);
    v4.bind(0, "127.0.0.1");
    v6.bind(0, "::1");
    await Promise.all([once(v4, "listening"), once(v6, "listening")]);
    v4.send("from-v4", bind.port, "127.0.0.1");
    v6.send("from-v6", bind.port, "::1");
    await waitFor(2);
    const byData = new Map(received.map((r) => [r.data, r.from.key]));
    assert.equal(byData.get("from-v4"), `127.0.0.1:${v4.address().port}`);
    assert.equal(byData.get("from-v6"), `[::1]:${v6.address().port}`);
  });

  it("sends batches to IPv4 and IPv6 endpoints and replies to the sender's endpoint", async () => {
    const a = await openBind();
    const b = await openBind();
    a.bind.send(
      [Buffer.from("one"), Buffer.from("two"), Buffer.from("three")],
      a.bind.parseEndpoint(`127.0.0.1:${b.bind.port}`),
    );
    await b.waitFor(3);
    assert.deepEqual(
      b.received.map((r) => r.data),
      ["one", "two", "three"],
    );
    assert.equal(b.received[0].from.key, `127.0.0.1:${a.bind.port}`);
    b.bind.send([Buffer.from("back")], b.received[0].from);
    a.bind.send([Buffer.from("six")], a.bind.parseEndpoint(`[::1]:${b.bind.port}`));
    await Promise.all([a.waitFor(1), b.waitFor(4)]);
    assert.equal(a.received[0].data, "back");
    assert.equal(b.received[3].from.key, `[::1]:${a.bind.port}`);
  });

  it("binds an IPv4-only address and drops IPv6 sends, counting them", async () => {
    const { bind } = await openBind("127.0.0.1");
    bind.send([Buffer.from("x")], bind.parseEndpoint("[::1]:9"));
    assert.equal(bind.sendDrops, 1);
  });

  it("refuses a port in use, naming it", async () => {
    const { bind } = await openBind();
    const second = createUdpBind({ port: bind.port });
    await assert.rejects(
      second.open(() => {}),
      {
        code: "EADDRINUSE",
        message: `bind UDP [::]:${bind.port}: Address already in use`,
      },
    );
  });
});
