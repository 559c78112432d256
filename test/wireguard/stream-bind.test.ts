import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Device } from "../../shared/wireguard/device.ts";
import {
  createStreamBind,
  parseStreamEndpoint,
  type StreamEndpoint,
} from "../../shared/wireguard/stream-bind.ts";
import { createNodeCryptoProvider } from "../../sidecar/wireguard/crypto-node.ts";
import { ipv6 } from "./support/device-pair.ts";
import { FakeClock } from "./support/fake-clock.ts";
import { MemoryTun } from "./support/memory-tun.ts";

describe("stream bind", () => {
  it("parses wg's endpoint notation into virtual endpoints", () => {
    const endpoint = parseStreamEndpoint("[fdae:41e4:649b:9304:0:0:0:1]:50888");
    assert.equal(endpoint.key, "[fdae:41e4:649b:9304::1]:50888");
    assert.equal(endpoint.addressBytes.length, 16);
    assert.equal(parseStreamEndpoint("192.0.2.1:51820").key, "192.0.2.1:51820");
    assert.throws(() => parseStreamEndpoint("fdae::1:50888"), /invalid endpoint/);
    assert.throws(() => parseStreamEndpoint("[fdae::1]:70000"), /invalid endpoint/);
  });

  it("drops and counts while no tunnel is attached; carries a handshake and data once one is", async () => {
    const crypto = createNodeCryptoProvider();
    const clock = new FakeClock();
    const nodeBind = createStreamBind();
    const serverBind = createStreamBind();
    const nodeTun = new MemoryTun("node");
    const serverTun = new MemoryTun("server");
    const node = new Device({ tun: nodeTun, bind: nodeBind, crypto, clock });
    const server = new Device({ tun: serverTun, bind: serverBind, crypto, clock });
    node.setPrivateKey(crypto.randomBytes(32));
    server.setPrivateKey(crypto.randomBytes(32));
    const serverVirtual = "[fdae:41e4:649b:9304::1]:50888";
    const nodeVirtual = parseStreamEndpoint("[fdae:41e4:649b:9304::2]:50888");
    node.setPeer({
      publicKey: server.publicKey!,
      endpoint: serverVirtual,
      allowedIps: ["fd00::1/128"],
    });
    server.setPeer({ publicKey: node.publicKey!, allowedIps: ["fd00::2/128"] });
    await node.start();
    await server.start();

    nodeTun.inject([ipv6("fd00::2", "fd00::1", "over the stream")]);
    assert.equal(nodeBind.drops, 1, "the initiation had no tunnel to go to");

    // The relay in between: the node's stream carries untagged datagrams, the server's uplink
    // tags each with the node's virtual endpoint.
    const flights: (() => void)[] = [];
    nodeBind.attach((datagrams) => {
      const copies = datagrams.map((d) => d.slice());
      flights.push(() => serverBind.deliver(copies, nodeVirtual));
    });
    serverBind.attach((datagrams, to: StreamEndpoint) => {
      assert.equal(to.key, nodeVirtual.key);
      const copies = datagrams.map((d) => d.slice());
      flights.push(() => nodeBind.deliver(copies, parseStreamEndpoint(serverVirtual)));
    });
    clock.advance(6000);
    while (flights.length > 0) flights.shift()!();
    assert.deepEqual(
      serverTun.take().map((p) => new TextDecoder().decode(p.subarray(40))),
      ["over the stream"],
    );
    assert.equal(server.peer(node.publicKey!)?.endpoint?.key, nodeVirtual.key);
    await node.close();
    await server.close();
  });
});
