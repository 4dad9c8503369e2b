/**
 * The reads every store repeated by hand: one row mapped from its snake_case
 * columns to the exported row type (or undefined), and for tables keyed by
 * `name`, the row of a name and the sorted names of every row. A store
 * declares its table once, next to its row mapping, and reads through it
 * with whatever runs its queries (the pool, or a client in a transaction).
 * Table names are constants of this layer, never input.
 */
import type pg from "pg";

/** What runs a query: the pool, or a client (inside a transaction or not). */
export type Queryable = pg.Pool | pg.ClientBase;

/** The first row a query returns, mapped; undefined when it returns none. */
export async function firstRow<Db extends pg.QueryResultRow, Row>(db: Queryable, sql: string, params: unknown[], fromDb: (r: Db) => Row): Promise<Row | undefined> {
  const res = await db.query<Db>(sql, params);
  const r = res.rows[0];
  return r === undefined ? undefined : fromDb(r);
}

/** A table whose rows are keyed by a `name` column. */
export class Table<Db extends pg.QueryResultRow, Row> {
  constructor(
    /** The SQL table name. */
    readonly table: string,
    private readonly fromDb: (r: Db) => Row,
  ) {}

  /** The row of a name (`SELECT * ... WHERE name = $1`). */
  get(db: Queryable, name: string): Promise<Row | undefined> {
    return firstRow(db, `SELECT * FROM ${this.table} WHERE name = $1`, [name], this.fromDb);
  }

  /** The names of every row, sorted (`SELECT name ... ORDER BY name`). */
  async names(db: Queryable): Promise<string[]> {
    const res = await db.query<{ name: string }>(`SELECT name FROM ${this.table} ORDER BY name`);
    return res.rows.map((r) => r.name);
  }
}
