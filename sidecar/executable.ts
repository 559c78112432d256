/**
 * How this program starts itself again, from a checkout, the npm package or the single
 * executable. A single executable sees `process.argv` as [exe, exe, ...args]: there is no
 * script to pass, and Node options on its command line would be taken as the program's own.
 */
import { isSea } from "node:sea";

/** The arguments that, after `process.execPath`, run this program again. */
export function selfArguments(): string[] {
  return isSea() ? [] : [...process.execArgv, process.argv[1]];
}
