/** SqlExecutor over node:sqlite: the relay's embedded store on Node (one file, every network). */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { migrate } from "../store/schema.ts";
import type { SqlExecutor, SqlRow, SqlValue } from "../store/sql.ts";
import { StoreUnavailableError } from "../store/store.ts";

export const DATABASE_FILE = "relay.sqlite";
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

/** Opens (creating as needed) `DIR/relay.sqlite` and brings its schema up to date. */
export function openSqliteDatabase(dataDir: string, options: SqliteOptions = {}): SqliteDatabase {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
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
