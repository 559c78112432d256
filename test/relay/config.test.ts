/**
 * The relay's settings (relay/app/config.ts): strict parsing with errors that name the setting
 * as the operator wrote it, flags over environment, the README's limits table listing every
 * setting, and the client keys and addresses per-client limits use.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { clientAddress, clientKey } from "../../relay/app/client-address.ts";
import {
  ConfigError,
  defaultSettings,
  envVarName,
  nodeConfig,
  SETTINGS,
  TRUSTED_PROXIES,
  workerConfig,
  workerVarName,
} from "../../relay/app/config.ts";
import { DEFAULT_RELAY_LIMITS } from "../../relay/app/limits.ts";
import { DEFAULT_HUB_LIMITS } from "../../relay/hub/hub.ts";
import { parseNetworkPrefix } from "../../shared/net/ip.ts";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");

describe("settings", () => {
  test("with nothing set, the limits are the relay's and the hub's defaults", () => {
    const config = workerConfig({});
    assert.deepEqual(config.limits, DEFAULT_RELAY_LIMITS);
    assert.deepEqual(config.hubLimits, DEFAULT_HUB_LIMITS);
    assert.deepEqual(config.trustedProxies, []);
  });

  test("a duration with a unit is refused, naming the var, the value and the form", () => {
    assert.throws(
      () => workerConfig({ RELAY_LIVENESS_TIMEOUT_MS: "45s" }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.setting === "RELAY_LIVENESS_TIMEOUT_MS" &&
        error.value === "45s" &&
        /RELAY_LIVENESS_TIMEOUT_MS="45s" is not valid: expected a whole number of milliseconds >= 1000/.test(
          error.message,
        ),
    );
    for (const [value, pattern] of [
      ["0", /burst.*>= 1/i],
      ["-3", /whole number/],
      ["1e3", /whole number/],
      ["2.5", /whole number/],
    ] as const) {
      assert.throws(
        () => workerConfig({ RELAY_NODE_BURST: value }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.setting === "RELAY_NODE_BURST" &&
          pattern.test(error.message),
        value,
      );
    }
    assert.throws(
      () => workerConfig({ RELAY_NODE_DATAGRAMS_PER_SECOND: "0" }),
      /RELAY_NODE_DATAGRAMS_PER_SECOND="0" is not valid: expected a decimal number > 0/,
    );
  });

  test("Worker vars set every limit, numbers or text", () => {
    const config = workerConfig({
      RELAY_LIVENESS_TIMEOUT_MS: 20_000,
      RELAY_PROVISION_FAILURES_PER_CLIENT_PER_SECOND: "0.25",
      RELAY_NODE_QUEUE_BYTES: "65536",
      RELAY_MAX_TUNNELS: " 7 ",
    });
    assert.equal(config.hubLimits.livenessTimeoutMs, 20_000);
    assert.equal(config.limits.provisionFailuresPerClient.perSecond, 0.25);
    assert.equal(config.hubLimits.nodeQueue.bytes, 65_536);
    assert.equal(config.hubLimits.nodeQueue.datagrams, DEFAULT_HUB_LIMITS.nodeQueue.datagrams);
    assert.equal(config.limits.maxTunnels, 7);
  });

  test("on Node a flag wins over the environment, and errors name what was written", () => {
    const config = nodeConfig(
      { "max-tunnels": "5" },
      { SIDEROLINK_RELAY_MAX_TUNNELS: "9", SIDEROLINK_RELAY_ACK_TIMEOUT_MS: "750" },
    );
    assert.equal(config.limits.maxTunnels, 5);
    assert.equal(config.hubLimits.ackTimeoutMs, 750);
    assert.throws(() => nodeConfig({}, { SIDEROLINK_RELAY_RETRY_MS: "fast" }), {
      name: "ConfigError",
      setting: "SIDEROLINK_RELAY_RETRY_MS",
    });
    assert.throws(() => nodeConfig({ "retry-ms": "fast" }, {}), {
      name: "ConfigError",
      setting: "--retry-ms",
    });
    assert.throws(() => nodeConfig({ [TRUSTED_PROXIES]: "10.0.0.0/8,proxy.local" }, {}), {
      name: "ConfigError",
      setting: "--trusted-proxies",
    });
    const proxied = nodeConfig({}, { SIDEROLINK_RELAY_TRUSTED_PROXIES: "127.0.0.1, fd00::/8" });
    assert.equal(proxied.trustedProxies.length, 2);
  });

  test("the README's limits table lists every setting with its flag, variables and default", () => {
    const defaults = defaultSettings();
    const rows = README.split("\n").filter((line) => line.startsWith("| `--"));
    for (const setting of SETTINGS) {
      const row = rows.find((line) => line.startsWith(`| \`--${setting.name}\` |`));
      assert.ok(row, `README limits table has no row for --${setting.name}`);
      const cells = row.split("|").map((cell) => cell.trim());
      assert.equal(cells[2], `\`${envVarName(setting.name)}\``, setting.name);
      assert.equal(cells[3], `\`${workerVarName(setting.name)}\``, setting.name);
      assert.equal(
        Number(cells[4].replaceAll(",", "")),
        defaults[setting.key],
        `${setting.name} default`,
      );
    }
    assert.ok(rows.some((line) => line.startsWith(`| \`--${TRUSTED_PROXIES}\` |`)));
    assert.equal(
      rows.length,
      SETTINGS.length + 1,
      "a README row for a setting that does not exist",
    );
  });
});

describe("clients", () => {
  test("an IPv6 client is its /64; IPv4 (mapped or not) is its address", () => {
    assert.equal(clientKey("2001:db8:1:2::a"), "2001:db8:1:2::/64");
    assert.equal(clientKey("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
    assert.notEqual(clientKey("2001:db8:1:3::a"), clientKey("2001:db8:1:2::a"));
    assert.equal(clientKey("::ffff:203.0.113.9"), "203.0.113.9");
    assert.equal(clientKey("203.0.113.9"), "203.0.113.9");
  });

  test("X-Forwarded-For counts only behind a trusted proxy, right to left", () => {
    const trusted = [parseNetworkPrefix("127.0.0.1"), parseNetworkPrefix("10.0.0.0/8")];
    assert.equal(clientAddress("198.51.100.7", "203.0.113.1", trusted), "198.51.100.7");
    assert.equal(clientAddress("127.0.0.1", "203.0.113.1", []), "127.0.0.1");
    assert.equal(clientAddress("::ffff:127.0.0.1", "203.0.113.1", trusted), "203.0.113.1");
    // The client may write anything left of what the proxies appended.
    assert.equal(
      clientAddress("127.0.0.1", "192.0.2.66, 203.0.113.1, 10.1.2.3", trusted),
      "203.0.113.1",
    );
    assert.equal(clientAddress("127.0.0.1", "not-an-address", trusted), "127.0.0.1");
    assert.equal(clientAddress("127.0.0.1", undefined, trusted), "127.0.0.1");
  });
});
