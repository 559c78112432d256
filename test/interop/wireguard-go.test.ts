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
import {
  type DeviceKind,
  generateKeyPair,
  generatePresharedKey,
  type KeyPair,
  removeKeyFiles,
  startDevice,
  type WgDevice,
} from "./wg-lab.ts";

/**
 * Our device (`siderolink-sidecar wireguard --foreground IFACE`, configured only with `wg` and
 * `ip`) against Debian's wireguard-go, each in its own namespace joined by a veth pair.
 *
 *   namespace "ours"  veth 10.203.0.1 fd03::1  --  veth 10.203.0.2 fd03::2  namespace "go"
 *   ts<pid>: 10.204.0.1 fd04::1   <== WireGuard ==>   go<pid>: 10.204.0.2 fd04::2
 */

const transfer = fileURLToPath(new URL("./fixtures/tcp-transfer.ts", import.meta.url));
const MiB = 1024 * 1024;
const ourPort = 51820;
const goPort = 51821;
const ourInner = { v4: "10.204.0.1", v6: "fd04::1" };
const goInner = { v4: "10.204.0.2", v6: "fd04::2" };

describe("our WireGuard device against wireguard-go", { timeout: 240_000 }, () => {
  let lab: Lab;
  let nsOurs: Netns;
  let nsGo: Netns;
  let ours: WgDevice | undefined;
  let go: WgDevice | undefined;
  let ourKeys: KeyPair;
  let goKeys: KeyPair;
  let psk: string;
  const ourIface = `ts${process.pid}`;
  const goIface = `go${process.pid}`;

  before(async () => {
    requirePrerequisites(["ip", "wg", "wireguard-go", "ping"]);
    lab = createLab("wgi");
    nsOurs = await lab.namespace("ours");
    nsGo = await lab.namespace("go");
    await lab.link(nsOurs, "10.203.0.1/24", nsGo, "10.203.0.2/24");
    await nsOurs.run("ip", ["address", "add", "fd03::1/64", "dev", "veth0", "nodad"]);
    await nsGo.run("ip", ["address", "add", "fd03::2/64", "dev", "veth0p", "nodad"]);
    [ourKeys, goKeys, psk] = await Promise.all([
      generateKeyPair(),
      generateKeyPair(),
      generatePresharedKey(),
    ]);
  });
  after(async () => {
    await lab?.close();
    removeKeyFiles();
  });

  async function startGo(endpoint: string | undefined): Promise<WgDevice> {
    const device = await startDevice("wireguard-go", nsGo, goIface);
    await device.setInterface(goKeys.privateKey, goPort);
    await device.setPeer({
      publicKey: ourKeys.publicKey,
      allowedIps: [`${ourInner.v4}/32`, `${ourInner.v6}/128`],
      presharedKey: psk,
      endpoint,
    });
    await device.addressAndUp([`${goInner.v4}/24`, `${goInner.v6}/64`]);
    return device;
  }

  async function configureOurPeer(device: WgDevice, endpoint: string | undefined): Promise<void> {
    await device.setPeer({
      publicKey: goKeys.publicKey,
      allowedIps: [`${goInner.v4}/32`, `${goInner.v6}/128`],
      presharedKey: psk,
      endpoint,
    });
  }

  /** Fresh processes on both sides; only `initiator` knows the other's endpoint unless "both". */
  async function startPair(initiator: DeviceKind | "both", underlay: 4 | 6 = 4): Promise<void> {
    await ours?.stop();
    await go?.stop();
    const ourAddress = underlay === 4 ? `10.203.0.1:${ourPort}` : `[fd03::1]:${ourPort}`;
    const goAddress = underlay === 4 ? `10.203.0.2:${goPort}` : `[fd03::2]:${goPort}`;
    ours = await startDevice("ours", nsOurs, ourIface);
    await ours.setInterface(ourKeys.privateKey, ourPort);
    await configureOurPeer(ours, initiator === "wireguard-go" ? undefined : goAddress);
    await ours.addressAndUp([`${ourInner.v4}/24`, `${ourInner.v6}/64`]);
    go = await startGo(initiator === "ours" ? undefined : ourAddress);
  }

  async function ping(from: Netns, to: string): Promise<void> {
    const { stdout } = await from.run("ping", ["-c", "3", "-i", "0.2", "-w", "10", to], {
      timeoutMs: 15_000,
    });
    assert.match(stdout, /3 packets transmitted, 3 received/);
  }

  /** Starts a receiver in `to` and a sender in `from`; resolves with both ends' reports. */
  async function startTransfer(
    from: Netns,
    to: Netns,
    address: string,
    port: number,
    mbit?: number,
  ) {
    const receiver = to.spawn(process.execPath, [transfer, "receive", address, String(port)]);
    await receiver.waitFor(/^listening/, 5000);
    const args = [transfer, "send", address, String(port), String(64 * MiB)];
    if (mbit !== undefined) args.push(String(mbit));
    const sender = from.spawn(process.execPath, args);
    const done = Promise.all([
      sender.waitFor(/^sent /, 120_000),
      receiver.waitFor(/^received /, 120_000),
    ]).then(([sent, received]) => {
      const [, sentBytes, sentHash] = sent.split(" ").filter((_, i) => i !== 2);
      const [, receivedBytes, receivedHash] = received.split(" ").filter((_, i) => i !== 2);
      return { sentBytes, sentHash, receivedBytes, receivedHash };
    });
    return { receiver, sender, done };
  }

  /** Resolves once the receiver has reported at least `bytes`; fails on timeout or exit. */
  async function receivedAtLeast(receiver: LabProcess, bytes: number): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const reports = receiver.output().match(/^(progress|received) \d+/gm) ?? [];
      const last = Number(reports.at(-1)?.split(" ")[1] ?? 0);
      if (last >= bytes) return;
      if (receiver.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`receiver got ${last} of ${bytes} bytes; output:\n${receiver.output()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  function assertIntact(result: {
    sentBytes: string;
    sentHash: string;
    receivedBytes: string;
    receivedHash: string;
  }) {
    assert.equal(result.sentBytes, String(64 * MiB));
    assert.equal(result.receivedBytes, String(64 * MiB));
    assert.equal(result.receivedHash, result.sentHash);
  }

  it("completes a handshake our device initiates and pings both ways", async () => {
    await startPair("ours");
    await ping(nsOurs, goInner.v4);
    await ping(nsGo, ourInner.v4);
    await ping(nsOurs, goInner.v6);
    const [peer] = (await go!.dump()).peers;
    assert.equal(peer.endpoint, `10.203.0.1:${ourPort}`, "wireguard-go learned our endpoint");
  });

  it("completes a handshake wireguard-go initiates over IPv6 and pings both ways", async () => {
    await startPair("wireguard-go", 6);
    await ping(nsGo, ourInner.v6);
    await ping(nsOurs, goInner.v4);
    const [peer] = (await ours!.dump()).peers;
    assert.equal(peer.endpoint, `[fd03::2]:${goPort}`, "our device learned the peer's endpoint");
  });

  it("moves 64 MiB each way at once over TCP with matching SHA-256", async () => {
    await startPair("both");
    const toGo = await startTransfer(nsOurs, nsGo, goInner.v4, 7101);
    const toOurs = await startTransfer(nsGo, nsOurs, ourInner.v6, 7102);
    assertIntact(await toGo.done);
    assertIntact(await toOurs.done);
  });

  it("keeps transfers intact through handshakes each side initiates again mid-stream", async () => {
    await startPair("both");
    const toGo = await startTransfer(nsOurs, nsGo, goInner.v4, 7201, 60);
    const toOurs = await startTransfer(nsGo, nsOurs, ourInner.v4, 7202, 60);
    await receivedAtLeast(toGo.receiver, 8 * MiB);

    // A removed and re-added peer starts with no session: the next packet needs a handshake.
    await ours!.removePeer(goKeys.publicKey);
    await configureOurPeer(ours!, `10.203.0.2:${goPort}`);
    assert.doesNotMatch(toGo.receiver.output(), /^received /m, "re-added before the end");
    await receivedAtLeast(toGo.receiver, 24 * MiB);
    assert.ok((await ours!.dump()).peers[0].latestHandshake > 0, "our device handshook again");

    await go!.removePeer(ourKeys.publicKey);
    await go!.setPeer({
      publicKey: ourKeys.publicKey,
      allowedIps: [`${ourInner.v4}/32`, `${ourInner.v6}/128`],
      presharedKey: psk,
      endpoint: `10.203.0.1:${ourPort}`,
    });
    assert.doesNotMatch(toOurs.receiver.output(), /^received /m, "re-added before the end");
    await receivedAtLeast(toOurs.receiver, 40 * MiB);
    assert.ok((await go!.dump()).peers[0].latestHandshake > 0, "wireguard-go handshook again");

    assertIntact(await toGo.done);
    assertIntact(await toOurs.done);
  });

  it("resumes transfers after wireguard-go restarts mid-stream", async () => {
    await startPair("both");
    const toGo = await startTransfer(nsOurs, nsGo, goInner.v4, 7301, 60);
    const toOurs = await startTransfer(nsGo, nsOurs, ourInner.v4, 7302, 60);
    await receivedAtLeast(toOurs.receiver, 12 * MiB);

    await go!.stop();
    go = await startGo(`10.203.0.1:${ourPort}`);
    assert.doesNotMatch(toOurs.receiver.output(), /^received /m, "restart came after the end");

    assertIntact(await toGo.done);
    assertIntact(await toOurs.done);
  });

  it("reports the peer, a recent handshake and its traffic in wg show", async () => {
    const status = await ours!.dump();
    assert.equal(status.publicKey, ourKeys.publicKey);
    assert.equal(status.privateKey, ourKeys.privateKey);
    assert.equal(status.listenPort, ourPort);
    assert.equal(status.peers.length, 1);
    const [peer] = status.peers;
    assert.equal(peer.publicKey, goKeys.publicKey);
    assert.equal(peer.presharedKey, psk);
    assert.equal(peer.endpoint, `10.203.0.2:${goPort}`);
    assert.deepEqual(peer.allowedIps.split(",").sort(), [`${goInner.v4}/32`, `${goInner.v6}/128`]);
    const age = Date.now() / 1000 - peer.latestHandshake;
    assert.ok(age >= -1 && age < 120, `latest handshake ${age.toFixed(0)} s ago`);
    assert.ok(
      peer.rxBytes > 64 * MiB && peer.txBytes > 64 * MiB,
      `rx ${peer.rxBytes} tx ${peer.txBytes}`,
    );
    const { stdout } = await nsOurs.run("wg", ["show", ourIface]);
    assert.match(stdout, new RegExp(`peer: ${goKeys.publicKey.replace(/[+/]/g, "\\$&")}`));
    assert.match(stdout, /latest handshake: .* ago/);
  });
});
