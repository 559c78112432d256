/** SqlExecutor over node:sqlite: the relay's embedded store on Node (one file, every network). */
import { chmodSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { migrate } from "../store/schema.ts";
import type { SqlExecutor, SqlRow, SqlValue } from "../store/sql.ts";
import { StoreUnavailableError } from "../store/store.ts";

export const DATABASE_FILE = "relay.sqlite";
/** The database and the files SQLite keeps beside it in WAL mode. */
const DATABASE_SUFFIXES = ["", "-wal", "-shm"] as const;
/** Only the relay's user may list the data dir, or read and write the database. */
const DATA_DIR_MODE = 0o700;
const DATABASE_MODE = 0o600;
/** How long a write waits for another process's lock before it fails. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

/** SQLite primary result codes that mean "the store cannot take this now", not a bad query. */
const UNAVAILABLE_CODES: Readonly<Record<number, string>> = {
  5: "locked by another process (SQLITE_BUSY): stop the other process holding it",
  6: "locked (SQLITE_LOCKED)",
  8: "read-only (SQLITE_READONLY): make the data dir and its files writable",
  10: "failing to read or write (SQLITE_IOERR): check the disk",
  13: "full (SQLITE_FULL): free disk space",
  14: "not openable (SQLITE_CANTOPEN): check the data dir exists and is writable",
};

export interface SqliteOptions {
  readonly busyTimeoutMs?: number;
}

export interface SqliteDatabase extends SqlExecutor {
  readonly path: string;
  close(): void;
}

/**
 * Opens (creating as needed) `DIR/relay.sqlite` and brings its schema up to date. The data dir
 * becomes 0700 and the database files 0600 on every open, whatever they were: a data dir made
 * by hand (0755) or restored from a backup (0644) must not leave the store readable by others.
 */
export function openSqliteDatabase(dataDir: string, options: SqliteOptions = {}): SqliteDatabase {
  mkdirSync(dataDir, { recursive: true, mode: DATA_DIR_MODE });
  restrict(dataDir, DATA_DIR_MODE);
  const path = join(dataDir, DATABASE_FILE);
  const unavailable = (error: unknown): unknown => storeError(error, path);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
  } catch (error) {
    throw unavailable(error);
  }
  try {
    db.exec(
      `PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS)}`,
    );
    db.exec("PRAGMA journal_mode = WAL");
    // Under WAL, NORMAL commits without waiting for fsync: a commit is in the WAL file (the
    // kernel's page cache) when COMMIT returns, so a crash of the relay process loses nothing
    // it acknowledged; only a power loss or kernel crash can take the last commits back.
    db.exec("PRAGMA synchronous = NORMAL");
    // Deleted and overwritten rows are zeroed, not left in free pages: a clear secret from an
    // older schema is gone once migrated.
    db.exec("PRAGMA secure_delete = ON");
    // Reading once creates -shm (and -wal) now, so they are restricted below. SQLite creates
    // them later with the database's own mode, 0600 from here on.
    db.exec("SELECT COUNT(*) FROM sqlite_schema");
    restrictDatabaseFiles(path);
  } catch (error) {
    db.close();
    throw unavailable(error);
  }
  const statements = new Map<string, ReturnType<DatabaseSync["prepare"]>>();
  let depth = 0;
  const executor: SqliteDatabase = {
    path,
    all<T extends SqlRow = SqlRow>(sql: string, ...params: SqlValue[]): T[] {
      try {
        let statement = statements.get(sql);
        if (!statement) {
          statement = db.prepare(sql);
          statements.set(sql, statement);
        }
        return statement.all(...(params as SQLInputValue[])) as T[];
      } catch (error) {
        throw unavailable(error);
      }
    },
    transaction<T>(fn: () => T): T {
      // Nested calls join the outer transaction, as a Durable Object's transactionSync does.
      if (depth > 0) return fn();
      try {
        db.exec("BEGIN IMMEDIATE");
      } catch (error) {
        throw unavailable(error);
      }
      depth++;
      try {
        const result = fn();
        db.exec("COMMIT");
        return result;
      } catch (error) {
        if (db.isTransaction) db.exec("ROLLBACK");
        throw unavailable(error);
      } finally {
        depth--;
      }
    },
    close(): void {
      db.close();
    },
  };
  try {
    migrate(executor);
  } catch (error) {
    db.close();
    throw error;
  }
  return executor;
}

function restrictDatabaseFiles(path: string): void {
  for (const suffix of DATABASE_SUFFIXES) restrict(`${path}${suffix}`, DATABASE_MODE);
}

/**
 * Gives `path` exactly `mode` when it has another (a file that does not exist is left alone).
 * Only a change is attempted, so a store already right on a read-only mount still opens as far
 * as SQLite goes, and reports itself read-only there.
 */
function restrict(path: string, mode: number): void {
  let current: number;
  try {
    current = statSync(path).mode & 0o777;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  if (current === mode) return;
  try {
    chmodSync(path, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new StoreUnavailableError(
      `the relay's store ${path} is mode 0${current.toString(8)} and cannot be made 0${mode.toString(8)} (${code}): run the relay as the owner of its data dir, on a writable file system`,
      { cause: error },
    );
  }
}

/** A node:sqlite error that means the store is unavailable, as StoreUnavailableError. */
function storeError(error: unknown, path: string): unknown {
  if (error instanceof StoreUnavailableError) return error;
  const code = (error as { errcode?: unknown } | null)?.errcode;
  const what = typeof code === "number" ? UNAVAILABLE_CODES[code & 0xff] : undefined;
  if (what === undefined) return error;
  return new StoreUnavailableError(`the relay's store ${path} is ${what}; nothing was changed`, {
    cause: error,
  });
}
