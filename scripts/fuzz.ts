/**
 * `npm run fuzz`: the fuzz targets of test/hardening/fuzz-targets.ts for longer than `npm test`
 * runs them. FUZZ_RUNS cases per target (default 20,000), FUZZ_SEED to replay a failure.
 */
import { FUZZ_TARGETS } from "../test/hardening/fuzz-targets.ts";

const runs = Number(process.env.FUZZ_RUNS) || 20_000;
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
process.stdout.write(`fuzz: ${runs} cases per target, seed ${seed} (FUZZ_SEED=${seed} replays)\n`);
let failed = 0;
for (const target of FUZZ_TARGETS) {
  const started = performance.now();
  try {
    await target.run(runs, seed);
    process.stdout.write(`ok   ${target.name} (${Math.round(performance.now() - started)} ms)\n`);
  } catch (error) {
    failed++;
    process.stdout.write(
      `FAIL ${target.name}\n${error instanceof Error ? error.message : String(error)}\n`,
    );
  }
}
process.exitCode = failed === 0 ? 0 : 1;
