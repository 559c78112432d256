/**
 * `npm run soak`: 1,000 node tunnels churning against a Node relay process on loopback for three
 * minutes (SOAK_TUNNELS, SOAK_SECONDS override), then the checks of test/hardening/soak.ts.
 * Prints the figures docs/reliability.md records; exits 1 when a check fails.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatSoak, runSoak, soakFailures } from "../test/hardening/soak.ts";

const tunnels = Number(process.env.SOAK_TUNNELS) || 1_000;
const seconds = Number(process.env.SOAK_SECONDS) || 180;
const dataDir = mkdtempSync(join(tmpdir(), "relay-soak-"));
const started = new Date();
try {
  const report = await runSoak({
    dataDir,
    tunnels,
    durationMs: seconds * 1000,
    connectedMs: [2_000, 15_000],
    awayMs: [500, 5_000],
    batchIntervalMs: 1_000,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`\nsoak of ${started.toISOString()}\n${formatSoak(report)}\n`);
  const failures = soakFailures(report);
  for (const failure of failures) process.stdout.write(`FAIL ${failure}\n`);
  process.exitCode = failures.length === 0 ? 0 : 1;
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
