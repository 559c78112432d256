/**
 * The `wg` configuration protocol against the format documented at
 * https://www.wireguard.com/xplatform/ and wireguard-go's behaviour (key order in `get`,
 * negative errno values, update_only / remove / replace_* semantics).
 */
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { Device } from "../../shared/wireguard/device.ts";
import { handleUapiRequest, uapiRequestLength } from "../../shared/wireguard/uapi.ts";
import { createNodeCryptoProvider } from "../../sidecar/wireguard/crypto-node.ts";
import { ipv4 } from "./support/device-pair.ts";
import { FakeClock } from "./support/fake-clock.ts";
import { MemoryNetwork } from "./support/memory-bind.ts";
import { MemoryTun } from "./support/memory-tun.ts";

const crypto = createNodeCryptoProvider();
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const keyPair = () => {
  const privateKey = crypto.randomBytes(32);
  return {
    privateKey: hex(privateKey),
    publicKey: hex(crypto.importPrivateKey(privateKey).publicKey),
  };
};

let devices: Device[] = [];
afterEach(async () => {
  for (const device of devices) await device.close();
  devices = [];
});

function makeDevice(
  clock: FakeClock,
  network: MemoryNetwork,
  address: string,
  openable = false,
): Device {
  const host = address.slice(0, address.lastIndexOf(":"));
  const device = new Device({
    tun: new MemoryTun(),
    bind: network.bind(address),
    crypto,
    clock,
    openBind: openable ? (port) => network.bind(`${host}:${port}`) : undefined,
  });
  devices.push(device);
  return device;
}

describe("uapi", () => {
  it("set then get round-trips in wireguard-go's format", async () => {
    const device = makeDevice(new FakeClock(), new MemoryNetwork(), "192.0.2.1:51820");
    const self = keyPair();
    const peer1 = keyPair();
    const peer2 = keyPair();
    const psk = "ab".repeat(32);
    const set = [
      "set=1",
      `private_key=${self.privateKey}`,
      "listen_port=51820",
      "fwmark=4660",
      "replace_peers=true",
      `public_key=${peer1.publicKey}`,
      `preshared_key=${psk}`,
      "endpoint=192.0.2.2:51820",
      "persistent_keepalive_interval=25",
      "replace_allowed_ips=true",
      "allowed_ip=10.0.0.2/32",
      "allowed_ip=fd00:0:0:0:0:0:0:2/128",
      "protocol_version=1",
      `public_key=${peer2.publicKey}`,
      "allowed_ip=10.1.0.0/16",
      "",
      "",
    ].join("\n");
    assert.equal(await handleUapiRequest(device, set), "errno=0\n\n");
    const expected = [
      `private_key=${self.privateKey}`,
      "listen_port=51820",
      "fwmark=4660",
      `public_key=${peer1.publicKey}`,
      `preshared_key=${psk}`,
      "protocol_version=1",
      "endpoint=192.0.2.2:51820",
      "last_handshake_time_sec=0",
      "last_handshake_time_nsec=0",
      "tx_bytes=0",
      "rx_bytes=0",
      "persistent_keepalive_interval=25",
      "allowed_ip=10.0.0.2/32",
      "allowed_ip=fd00::2/128",
      `public_key=${peer2.publicKey}`,
      `preshared_key=${"00".repeat(32)}`,
      "protocol_version=1",
      "last_handshake_time_sec=0",
      "last_handshake_time_nsec=0",
      "tx_bytes=0",
      "rx_bytes=0",
      "persistent_keepalive_interval=0",
      "allowed_ip=10.1.0.0/16",
      "errno=0",
      "",
      "",
    ].join("\n");
    assert.equal(await handleUapiRequest(device, "get=1\n\n"), expected);
  });

  it("remove, update_only, replace_allowed_ips, replace_peers and the device's own key", async () => {
    const device = makeDevice(new FakeClock(), new MemoryNetwork(), "192.0.2.1:51820");
    const self = keyPair();
    const p1 = keyPair();
    const p2 = keyPair();
    const ok = async (lines: string[]) =>
      assert.equal(
        await handleUapiRequest(device, `set=1\n${lines.join("\n")}\n\n`),
        "errno=0\n\n",
      );
    const peers = async () =>
      (await handleUapiRequest(device, "get=1\n\n"))
        .split("\n")
        .filter((line) => line.startsWith("public_key=") || line.startsWith("allowed_ip="));

    await ok([
      `private_key=${self.privateKey}`,
      `public_key=${p1.publicKey}`,
      "allowed_ip=10.0.0.1/32",
    ]);
    await ok([`public_key=${p2.publicKey}`, "update_only=true", "allowed_ip=10.0.0.2/32"]);
    await ok([`public_key=${self.publicKey}`, "allowed_ip=10.0.0.3/32"]);
    assert.deepEqual(await peers(), [`public_key=${p1.publicKey}`, "allowed_ip=10.0.0.1/32"]);

    await ok([
      `public_key=${p1.publicKey}`,
      "update_only=true",
      "replace_allowed_ips=true",
      "allowed_ip=10.9.0.0/16",
    ]);
    assert.deepEqual(await peers(), [`public_key=${p1.publicKey}`, "allowed_ip=10.9.0.0/16"]);

    await ok([`public_key=${p2.publicKey}`, "allowed_ip=10.0.0.2/32"]);
    await ok([`public_key=${p1.publicKey}`, "remove=true"]);
    assert.deepEqual(await peers(), [`public_key=${p2.publicKey}`, "allowed_ip=10.0.0.2/32"]);

    await ok(["replace_peers=true"]);
    assert.deepEqual(await peers(), []);
    assert.equal(
      await handleUapiRequest(device, `set=1\nprivate_key=${"00".repeat(32)}\n\n`),
      "errno=0\n\n",
    );
    assert.equal(await handleUapiRequest(device, "get=1\n\n"), "listen_port=51820\nerrno=0\n\n");
  });

  it("reports wireguard-go's errno values", async () => {
    const device = makeDevice(new FakeClock(), new MemoryNetwork(), "192.0.2.1:51820");
    const set = (body: string) => handleUapiRequest(device, `set=1\n${body}\n\n`);
    assert.equal(await set("no_such_key=1"), "errno=-22\n\n");
    assert.equal(await set("private_key=zz"), "errno=-22\n\n");
    assert.equal(await set("a line without equals"), "errno=-71\n\n");
    assert.equal(await set("listen_port=70000"), "errno=-22\n\n");
    assert.equal(await set("listen_port=51821"), "errno=-98\n\n", "this bind's port is fixed");
    assert.equal(await set("replace_peers=false"), "errno=-22\n\n");
    const peer = keyPair().publicKey;
    assert.equal(await set(`public_key=${peer}\nprotocol_version=2`), "errno=-22\n\n");
    assert.equal(await set(`public_key=${peer}\nallowed_ip=10.0.0.0/40`), "errno=-22\n\n");
    assert.equal(await set(`public_key=${peer}\nendpoint=not-an-endpoint`), "errno=-22\n\n");
    assert.equal(
      await set(`public_key=${peer}\npersistent_keepalive_interval=65536`),
      "errno=-22\n\n",
    );
    assert.equal(await handleUapiRequest(device, "get=1\nextra\n\n"), "errno=-22\n\n");
  });

  it("listen_port re-binds through openBind", async () => {
    const device = makeDevice(new FakeClock(), new MemoryNetwork(), "192.0.2.1:51820", true);
    await device.start();
    assert.equal(await handleUapiRequest(device, "set=1\nlisten_port=40000\n\n"), "errno=0\n\n");
    assert.equal(await handleUapiRequest(device, "get=1\n\n"), "listen_port=40000\nerrno=0\n\n");
  });

  it("finds request boundaries in a stream", () => {
    assert.equal(uapiRequestLength("get=1\n"), 0);
    assert.equal(uapiRequestLength("get=1\n\nset=1\n"), 7);
  });

  it("two devices configured only through uapi complete a handshake; get reports it", async () => {
    const clock = new FakeClock();
    const network = new MemoryNetwork();
    const a = makeDevice(clock, network, "192.0.2.1:51820");
    const b = makeDevice(clock, network, "192.0.2.2:51820");
    const ka = keyPair();
    const kb = keyPair();
    await handleUapiRequest(
      a,
      `set=1\nprivate_key=${ka.privateKey}\npublic_key=${kb.publicKey}\nendpoint=192.0.2.2:51820\nallowed_ip=10.0.0.2/32\n\n`,
    );
    await handleUapiRequest(
      b,
      `set=1\nprivate_key=${kb.privateKey}\npublic_key=${ka.publicKey}\nallowed_ip=10.0.0.1/32\n\n`,
    );
    await a.start();
    await b.start();
    (a.tun as MemoryTun).inject([ipv4("10.0.0.1", "10.0.0.2", "ping")]);
    network.deliver();
    assert.equal((b.tun as MemoryTun).take().length, 1);

    const get = async (device: Device) =>
      Object.fromEntries(
        (await handleUapiRequest(device, "get=1\n\n"))
          .split("\n")
          .filter((line) => line.includes("="))
          .map((line) => line.split("=") as [string, string]),
      );
    const statusA = await get(a);
    const statusB = await get(b);
    assert.equal(Number(statusA.last_handshake_time_sec), Math.floor(clock.wallNow() / 1000));
    assert.equal(statusB.endpoint, "192.0.2.1:51820", "learned from the initiation");
    assert.equal(statusA.tx_bytes, statusB.rx_bytes);
    assert.equal(statusB.tx_bytes, statusA.rx_bytes);
    // Initiation 148 + data (20 + 4 bytes padded to 32, plus 32 overhead) = 212.
    assert.equal(statusA.tx_bytes, "212");
  });
});
