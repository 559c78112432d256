import assert from "node:assert/strict";

/** Anything but these means the awaited condition holds. */
type NotYet = undefined | false;

/**
 * Polls `probe` until it yields a value other than undefined or false, and returns it; fails the
 * test naming what it waited for after `timeoutMs`. A probe that throws counts as not yet, and
 * its last error goes into the failure, so a condition that is still settling (a process not up,
 * a socket not open) is simply asked again.
 */
export async function eventually<T>(
  what: string,
  probe: () => T | NotYet | Promise<T | NotYet>,
  timeoutMs = 5_000,
  intervalMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? "" : ` (last error: ${String(lastError)})`;
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
