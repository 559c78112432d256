/** SqlExecutor over node:sqlite: the relay's embedded store on Node (one file, every network). */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { migrate } from "../store/schema.ts";
import type { SqlExecutor, SqlRow, SqlValue } from "../store/sql.ts";

export const DATABASE_FILE = "relay.sqlite";

export interface SqliteDatabase extends SqlExecutor {
  readonly path: string;
  close(): void;
}

/** Opens (creating as needed) `DIR/relay.sqlite` and brings its schema up to date. */
export function openSqliteDatabase(dataDir: string): SqliteDatabase {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, DATABASE_FILE);
  const db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA busy_timeout = 5000");
  const statements = new Map<string, ReturnType<DatabaseSync["prepare"]>>();
  let depth = 0;
  const executor: SqliteDatabase = {
    path,
    all<T extends SqlRow = SqlRow>(sql: string, ...params: SqlValue[]): T[] {
      let statement = statements.get(sql);
      if (!statement) {
        statement = db.prepare(sql);
        statements.set(sql, statement);
      }
      return statement.all(...(params as SQLInputValue[])) as T[];
    },
    transaction<T>(fn: () => T): T {
      // Nested calls join the outer transaction, as a Durable Object's transactionSync does.
      if (depth > 0) return fn();
      db.exec("BEGIN IMMEDIATE");
      depth++;
      try {
        const result = fn();
        db.exec("COMMIT");
        return result;
      } catch (error) {
        db.exec("ROLLBACK");
        throw error;
      } finally {
        depth--;
      }
    },
    close(): void {
      db.close();
    },
  };
  migrate(executor);
  return executor;
}
