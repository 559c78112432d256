/**
 * The one thing each runtime provides for storage: synchronous SQLite. node:sqlite's
 * DatabaseSync and a Durable Object's `ctx.storage.sql` both fit in a few lines. Statements use
 * only what both accept: no BEGIN/COMMIT (Durable Objects forbid them; `transaction` wraps the
 * runtime's own), no PRAGMA, blobs avoided (text and integers only).
 */
export type SqlValue = string | number | null;
export type SqlRow = Record<string, SqlValue>;

export interface SqlExecutor {
  /** Runs one statement with `?` parameters and returns its rows (empty for none). */
  all<T extends SqlRow = SqlRow>(sql: string, ...params: SqlValue[]): T[];
  /** Runs `fn` atomically: every statement in it applies, or none (when it throws). */
  transaction<T>(fn: () => T): T;
}
