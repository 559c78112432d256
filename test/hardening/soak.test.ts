/**
 * The soak, shortened for `npm test`: 200 node tunnels churning for 20 s against a relay
 * process (`npm run soak` runs 1,000 for three minutes). See soak.ts for what it checks.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { formatSoak, runSoak, soakFailures } from "./soak.ts";

test("200 churning tunnels for 20 s: counters add up, memory and fds return to baseline", {
  timeout: 120_000,
}, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "relay-soak-"));
  try {
    const report = await runSoak({
      dataDir,
      tunnels: 200,
      durationMs: 20_000,
      connectedMs: [1_000, 5_000],
      awayMs: [200, 1_500],
      batchIntervalMs: 250,
    });
    const failures = soakFailures(report);
    assert.deepEqual(failures, [], `${failures.join("\n")}\n${formatSoak(report)}`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
