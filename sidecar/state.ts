/**
 * The state directory (`--state`, default /var/lib/siderolink-sidecar): the few values that
 * must outlive a restart. A node keeps its unique token there (so the relay gives it back the
 * same address); a server keeps its WireGuard private key (so nodes keep trusting it).
 *
 * Files are written whole (temporary file, then rename) with mode 0600 in a 0700 directory,
 * so a crash never leaves half a key and no other user reads one.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatKey, generatePrivateKey, parseKey } from "../shared/siderolink/keys.ts";

export const DEFAULT_STATE_DIRECTORY = "/var/lib/siderolink-sidecar";
export const UNIQUE_TOKEN_FILE = "unique-token";
export const SERVER_KEY_FILE = "server.key";

/** Creates the directory (and parents) if needed and restricts it to its owner. */
export function ensureStateDirectory(directory: string): void {
  try {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    chmodSync(directory, 0o700);
  } catch (cause) {
    throw new Error(
      `cannot use state directory ${directory}: ${(cause as Error).message}; ` +
        "pass a writable directory with --state",
      { cause },
    );
  }
}

/** The file's trimmed text, or undefined when it does not exist. */
export function readStateFile(directory: string, name: string): string | undefined {
  try {
    return readFileSync(join(directory, name), "utf8").trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

/** Writes the file atomically, readable by its owner only. */
export function writeStateFile(directory: string, name: string, text: string): void {
  ensureStateDirectory(directory);
  const path = join(directory, name);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${text}\n`, { mode: 0o600 });
  renameSync(temporary, path);
}

/** The value stored under `name`, created by `generate` on first use. */
export function loadOrCreate(directory: string, name: string, generate: () => string): string {
  const existing = readStateFile(directory, name);
  if (existing !== undefined && existing !== "") return existing;
  const value = generate();
  writeStateFile(directory, name, value);
  return value;
}

/** A fresh unique token: 32 random bytes, base64url. */
export function generateUniqueToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * The server's persistent WireGuard private key (base64, as `wg genkey` writes it), created on
 * first start. A file that does not hold a valid key is an error, never silently replaced: a
 * new key would cut off every node.
 */
export function loadOrCreateServerKey(directory: string): Uint8Array {
  const text = loadOrCreate(directory, SERVER_KEY_FILE, () => formatKey(generatePrivateKey()));
  try {
    return parseKey(text, join(directory, SERVER_KEY_FILE));
  } catch (cause) {
    throw new Error(
      `${join(directory, SERVER_KEY_FILE)} does not hold a WireGuard private key (base64 of 32 bytes); ` +
        "restore it from a backup, or delete it to make a new key (every node then re-provisions)",
      { cause },
    );
  }
}
