/**
 * Bounded fuzzing inside `npm test`: every target of fuzz-targets.ts with a fixed number of
 * generated cases (FUZZ_RUNS overrides it; `npm run fuzz` runs many more).
 */
import { describe, test } from "node:test";
import { FUZZ_TARGETS } from "./fuzz-targets.ts";

const RUNS = Number(process.env.FUZZ_RUNS) || 300;

describe(`fuzzing (${RUNS} cases per target)`, () => {
  for (const target of FUZZ_TARGETS) {
    test(target.name, { timeout: 120_000 }, () => target.run(RUNS));
  }
});
