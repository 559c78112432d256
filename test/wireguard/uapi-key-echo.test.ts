/**
 * A key that does not parse must not reach the log: a private key one digit short, or with a
 * typo, is still almost all of the key. The configuration log says what was wrong with its
 * shape (length, alphabet), never the text.
 */
import assert from "node:assert/strict";
import { afterEach, it } from "node:test";
import { Device } from "../../shared/wireguard/device.ts";
import { handleUapiRequest } from "../../shared/wireguard/uapi.ts";
import { createNodeCryptoProvider } from "../../sidecar/wireguard/crypto-node.ts";
import { FakeClock } from "./support/fake-clock.ts";
import { MemoryNetwork } from "./support/memory-bind.ts";
import { MemoryTun } from "./support/memory-tun.ts";

const crypto = createNodeCryptoProvider();
let device: Device | undefined;
afterEach(async () => {
  await device?.close();
});

it("malformed private, public and preshared keys are logged by shape, not echoed", async () => {
  device = new Device({
    tun: new MemoryTun(),
    bind: new MemoryNetwork().bind("192.0.2.1:51820"),
    crypto,
    clock: new FakeClock(),
  });
  const key = Buffer.from(crypto.randomBytes(32)).toString("hex");
  const malformed = [
    `private_key=${key.slice(0, 63)}`,
    `private_key=${key.slice(0, 62)}zz`,
    `public_key=${key}0`,
    `public_key=${Buffer.from(crypto.randomBytes(32)).toString("hex")}\npreshared_key=${key.slice(1)}`,
  ];
  for (const line of malformed) {
    const logged: string[] = [];
    const reply = await handleUapiRequest(device, `set=1\n${line}\n\n`, (message) =>
      logged.push(message),
    );
    assert.match(reply, /^errno=-22\n\n$/, line);
    const text = logged.join("\n");
    assert.match(
      text,
      /expected 64 hex digits for (private|public|preshared)_key, got \d+ characters/,
    );
    // No run of 16 characters of the key survives in the log.
    for (let i = 0; i + 16 <= key.length; i++)
      assert.ok(!text.includes(key.slice(i, i + 16)), `${line.split("=")[0]} echoed: ${text}`);
  }
});
