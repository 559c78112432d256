/** SqlExecutor over a Durable Object's SQLite storage: one database per network object. */
import type { SqlExecutor, SqlRow, SqlValue } from "../store/sql.ts";

/**
 * Wraps `ctx.storage`. Durable Objects commit each event's writes together (output gates hold
 * replies until they are durable), and `transactionSync` makes a group of statements
 * all-or-nothing within that.
 */
export function durableSql(storage: DurableObjectStorage): SqlExecutor {
  return {
    all<T extends SqlRow = SqlRow>(sql: string, ...params: SqlValue[]): T[] {
      return storage.sql.exec<T>(sql, ...params).toArray();
    },
    transaction<T>(fn: () => T): T {
      return storage.transactionSync(fn);
    },
  };
}
