/**
 * The release version the CLIs report (`--version`, `status --json`). It must equal
 * package.json's "version": `npm run package` refuses to build otherwise.
 */
export const VERSION = "0.1.0";
