/**
 * PostgreSQL storage for API objects: atomic read-modify-write with
 * resourceVersions drawn in commit order, and the event history that watches
 * resume from.
 */
import type pg from "pg";
import { randomUUID } from "node:crypto";
import { alreadyExists, notFound } from "./errors.js";
import { clone, type KubeObject } from "./object.js";
import { WriteBatcher } from "./write-batcher.js";

/** Addresses one object. namespace is "" for cluster-scoped objects. */
export interface ObjectKey {
  group: string;
  plural: string;
  namespace: string;
  name: string;
}

/** What a mutation function decided. */
export type Mutation =
  | { type: "create"; object: KubeObject }
  | { type: "update"; object: KubeObject }
  | { type: "delete"; object: KubeObject }
  | { type: "noop"; object: KubeObject };

/** The outcome of a committed (or dry-run) mutation. */
export interface MutationResult {
  type: Mutation["type"];
  object: KubeObject;
}

/** A stored watch event. */
export interface StoredEvent {
  rv: number;
  group: string;
  plural: string;
  namespace: string;
  name: string;
  type: "ADDED" | "MODIFIED" | "DELETED";
  object: KubeObject;
}

/** Options of a list. */
export interface ListOptions {
  namespace?: string;
  /** Equality label requirements used to pre-filter with jsonb containment. */
  labelEquals?: Record<string, string>;
  /** Resume after this (namespace, name), exclusive. */
  after?: { namespace: string; name: string };
  /** Maximum rows to read (the caller filters further). */
  limit?: number;
  /**
   * Read the objects as they were at this revision (a continue page of a
   * list whose first page was read at it), as kube-apiserver serves continue
   * pages from etcd's MVCC. Throws ExpiredError when that state is no longer
   * retained for some object in range.
   */
  asOf?: number;
}

/** The state at the requested revision is no longer retained (compacted). */
export class ExpiredError extends Error {}

/** The notification channel that carries "new events committed". */
export const eventsChannel = "fabric_api_events";

/** Object storage on PostgreSQL. */
export class Store {
  private readonly writer: WriteBatcher;

  constructor(private readonly pool: pg.Pool) {
    this.writer = new WriteBatcher(pool);
  }

  /** Reads one object, or undefined. */
  async get(key: ObjectKey): Promise<KubeObject | undefined> {
    const r = await this.pool.query<{ data: KubeObject }>({
      name: "api_get",
      text: "SELECT data FROM api_objects WHERE api_group=$1 AND resource=$2 AND namespace=$3 AND name=$4",
      values: [key.group, key.plural, key.namespace, key.name],
    });
    return r.rows[0]?.data;
  }

  /**
   * Reads a page of objects of one resource and the revision they are consistent with.
   * Ordered by (namespace, name).
   */
  async list(group: string, plural: string, opts: ListOptions): Promise<{ items: KubeObject[]; rv: number }> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      if (opts.asOf !== undefined) {
        const items = await this.listAt(client, group, plural, opts.asOf, opts);
        await client.query("COMMIT");
        return { items, rv: opts.asOf };
      }
      const rev = await client.query<{ rv: string }>("SELECT rv FROM api_revision WHERE id=1");
      const where = ["api_group=$1", "resource=$2"];
      const args: unknown[] = [group, plural];
      if (opts.namespace !== undefined) {
        args.push(opts.namespace);
        where.push(`namespace=$${args.length}`);
      }
      if (opts.labelEquals && Object.keys(opts.labelEquals).length > 0) {
        args.push(JSON.stringify(opts.labelEquals));
        where.push(`(data->'metadata'->'labels') @> $${args.length}::jsonb`);
      }
      if (opts.after) {
        args.push(opts.after.namespace, opts.after.name);
        where.push(`(namespace, name) > ($${args.length - 1}, $${args.length})`);
      }
      let sql = `SELECT data FROM api_objects WHERE ${where.join(" AND ")} ORDER BY namespace, name`;
      if (opts.limit !== undefined) {
        args.push(opts.limit);
        sql += ` LIMIT $${args.length}`;
      }
      const r = await client.query<{ data: KubeObject }>(sql, args);
      await client.query("COMMIT");
      return { items: r.rows.map((x) => x.data), rv: Number(rev.rows[0]?.rv ?? 0) };
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /**
   * One page of the objects of a resource as they were at revision `at`,
   * inside the caller's REPEATABLE READ transaction: an object unchanged
   * since `at` as it is now; one changed after `at` as its newest retained
   * event at or before `at` says (absent if that was a DELETED); one whose
   * first change after `at` created it did not exist. An object changed after
   * `at` whose earlier state was compacted away cannot be shown as it was:
   * ExpiredError (kube answers 410 for such a continue token). Label
   * requirements are not applied here (the caller filters every item).
   */
  private async listAt(
    client: pg.PoolClient, group: string, plural: string, at: number, opts: ListOptions,
  ): Promise<KubeObject[]> {
    const args: unknown[] = [group, plural, at];
    let nsParam = 0;
    let afterParam = 0;
    if (opts.namespace !== undefined) nsParam = args.push(opts.namespace);
    if (opts.after) afterParam = args.push(opts.after.namespace, opts.after.name) - 1;
    const cond = (alias: string): string =>
      (nsParam ? ` AND ${alias}.namespace=$${nsParam}` : "") +
      (afterParam ? ` AND (${alias}.namespace, ${alias}.name) > ($${afterParam}, $${afterParam + 1})` : "");
    const cChanged = cond("e0");
    const cObj = cond("o");
    const cPast = cond("e");
    let limit = "";
    if (opts.limit !== undefined) {
      args.push(opts.limit);
      limit = ` LIMIT $${args.length}`;
    }
    const r = await client.query<{ data: KubeObject | null; unknown: boolean }>(
      `WITH changed AS (
         SELECT DISTINCT e0.namespace, e0.name FROM api_events e0
          WHERE e0.api_group=$1 AND e0.resource=$2 AND e0.rv > $3${cChanged}),
       past AS (
         SELECT DISTINCT ON (e.namespace, e.name) e.namespace, e.name, e.type, e.data
           FROM api_events e JOIN changed c ON c.namespace=e.namespace AND c.name=e.name
          WHERE e.api_group=$1 AND e.resource=$2 AND e.rv <= $3${cPast}
          ORDER BY e.namespace, e.name, e.rv DESC),
       unknown AS (
         SELECT 1 FROM changed c
          WHERE NOT EXISTS (SELECT 1 FROM past p WHERE p.namespace=c.namespace AND p.name=c.name)
            AND (SELECT f.type FROM api_events f
                  WHERE f.api_group=$1 AND f.resource=$2 AND f.namespace=c.namespace AND f.name=c.name AND f.rv > $3
                  ORDER BY f.rv LIMIT 1) <> 'ADDED'
          LIMIT 1)
       SELECT NULL::jsonb AS data, true AS unknown FROM unknown
       UNION ALL
       (SELECT data, false AS unknown FROM (
          SELECT o.namespace, o.name, o.data FROM api_objects o
           WHERE o.api_group=$1 AND o.resource=$2${cObj}
             AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.namespace=o.namespace AND c.name=o.name)
          UNION ALL
          SELECT namespace, name, data FROM past WHERE type <> 'DELETED') AS x
        ORDER BY namespace, name${limit})`,
      args,
    );
    if (r.rows.some((row) => row.unknown)) throw new ExpiredError(`the state at revision ${at} is no longer retained`);
    return r.rows.map((row) => row.data as KubeObject);
  }

  /**
   * The keys ("namespace/name") of the objects of one resource that existed
   * and satisfied `matches` at revision `rv`, for a filtered watch that
   * resumes from `rv`: it must turn a later change into ADDED or DELETED when
   * the object starts or stops matching, as kube-apiserver does. An object
   * unchanged since `rv` is judged by its current state; one changed after
   * `rv` by its newest retained event at or before `rv` (none: it did not
   * exist then, or its history was compacted, and it counts as absent).
   */
  async keysMatchingAt(
    group: string, plural: string, namespace: string | undefined, rv: number, matches: (o: KubeObject) => boolean,
  ): Promise<Set<string>> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const args: unknown[] = [group, plural, rv];
      const ns = namespace === undefined ? "" : (args.push(namespace), ` AND namespace=$4`);
      const r = await client.query<{ namespace: string; name: string; type: string; data: KubeObject }>(
        `WITH changed AS (
           SELECT DISTINCT namespace, name FROM api_events WHERE api_group=$1 AND resource=$2 AND rv > $3${ns})
         SELECT o.namespace, o.name, 'ADDED' AS type, o.data FROM api_objects o
          WHERE o.api_group=$1 AND o.resource=$2${ns.replace("namespace", "o.namespace")}
            AND NOT EXISTS (SELECT 1 FROM changed c WHERE c.namespace=o.namespace AND c.name=o.name)
         UNION ALL
         SELECT * FROM (
           SELECT DISTINCT ON (e.namespace, e.name) e.namespace, e.name, e.type, e.data
             FROM api_events e JOIN changed c ON c.namespace=e.namespace AND c.name=e.name
            WHERE e.api_group=$1 AND e.resource=$2 AND e.rv <= $3
            ORDER BY e.namespace, e.name, e.rv DESC) AS before`,
        args,
      );
      await client.query("COMMIT");
      const out = new Set<string>();
      for (const row of r.rows) if (row.type !== "DELETED" && matches(row.data)) out.add(`${row.namespace}/${row.name}`);
      return out;
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Number of objects in a namespace (any resource). */
  async countInNamespace(namespace: string): Promise<number> {
    const r = await this.pool.query<{ n: string }>("SELECT count(*) AS n FROM api_objects WHERE namespace=$1", [namespace]);
    return Number(r.rows[0]?.n ?? 0);
  }

  /** Keys of every object in a namespace. */
  async keysInNamespace(namespace: string): Promise<ObjectKey[]> {
    const r = await this.pool.query<{ api_group: string; resource: string; name: string }>(
      "SELECT api_group, resource, name FROM api_objects WHERE namespace=$1",
      [namespace],
    );
    return r.rows.map((x) => ({ group: x.api_group, plural: x.resource, namespace, name: x.name }));
  }

  /** The newest committed revision. */
  async revision(): Promise<{ rv: number; compactedRv: number }> {
    const r = await this.pool.query<{ rv: string; compacted_rv: string }>("SELECT rv, compacted_rv FROM api_revision WHERE id=1");
    return { rv: Number(r.rows[0]?.rv ?? 0), compactedRv: Number(r.rows[0]?.compacted_rv ?? 0) };
  }

  /**
   * Read-modify-write of one object with optimistic concurrency, like
   * kube-apiserver's GuaranteedUpdate: read the current object, let `decide`
   * compute the outcome, then write it in ONE statement that is conditional
   * on the object's resourceVersion being unchanged (or on its absence, for a
   * create). When another writer got there first, re-read and decide again.
   * `decide` may therefore run more than once and must have no side effects.
   *
   * The write goes through the WriteBatcher: with the writes of concurrent
   * requests, in one transaction that locks the revision row, writes each
   * object and its watch event and NOTIFYs once; the row lock is held until
   * commit, so revisions commit in order. The promise resolves only after
   * the commit. With dryRun nothing is written.
   */
  async mutate(
    key: ObjectKey,
    decide: (current: KubeObject | undefined) => Mutation | Promise<Mutation>,
    opts: { dryRun?: boolean; expectAbsent?: boolean } = {},
  ): Promise<MutationResult> {
    const pk = [key.group, key.plural, key.namespace, key.name];
    for (let attempt = 0; ; attempt++) {
      // A create first assumes the object is absent (one round trip); the
      // insert is conditional, so when it exists we read it and decide again.
      const skipRead = attempt === 0 && opts.expectAbsent === true && !opts.dryRun;
      const cur = skipRead
        ? { rows: [] as Array<{ data: KubeObject; rv: string }> }
        : await this.pool.query<{ data: KubeObject; rv: string }>({
            name: "api_read",
            text: "SELECT data, rv FROM api_objects WHERE api_group=$1 AND resource=$2 AND namespace=$3 AND name=$4",
            values: pk,
          });
      const row = cur.rows[0];
      const current = row?.data;
      const m = await decide(current === undefined ? undefined : clone(current));
      if (m.type === "noop" || opts.dryRun) {
        if (m.type !== "noop" && m.type !== "delete") m.object.metadata.resourceVersion = current?.metadata.resourceVersion;
        return { type: m.type, object: m.object };
      }
      if (m.type !== "create" && row === undefined) throw notFound(key.group, key.plural, key.name);
      const obj = m.object;
      delete obj.metadata.resourceVersion;
      const base = { g: key.group, r: key.plural, ns: key.namespace, n: key.name, d: obj };
      let rv: string | undefined;
      if (m.type === "create") {
        obj.metadata.uid ??= randomUUID();
        rv = await this.writer.write({ ...base, op: "create", uid: obj.metadata.uid });
        if (rv === undefined) {
          // Lost a race with another create (or the object exists): decide again on what is there.
          if (attempt < 5) continue;
          throw alreadyExists(key.group, key.plural, key.name);
        }
      } else {
        rv = await this.writer.write({ ...base, op: m.type, rv: row?.rv });
      }
      if (rv === undefined) {
        if (attempt < 20) continue; // modified concurrently: re-read and decide again
        throw new Error(`object ${key.plural}/${key.name} kept changing under a write`);
      }
      obj.metadata.resourceVersion = rv;
      return { type: m.type, object: obj };
    }
  }

  /** Events after `afterRv` (exclusive) up to `uptoRv` (inclusive), optionally of one resource. */
  async events(afterRv: number, uptoRv: number | undefined, resource?: { group: string; plural: string }, limit = 5000): Promise<StoredEvent[]> {
    const args: unknown[] = [afterRv];
    let sql = "SELECT rv, api_group, resource, namespace, name, type, data FROM api_events WHERE rv > $1";
    if (uptoRv !== undefined) {
      args.push(uptoRv);
      sql += ` AND rv <= $${args.length}`;
    }
    if (resource) {
      args.push(resource.group, resource.plural);
      sql += ` AND api_group=$${args.length - 1} AND resource=$${args.length}`;
    }
    args.push(limit);
    sql += ` ORDER BY rv LIMIT $${args.length}`;
    const r = await this.pool.query<{
      rv: string;
      api_group: string;
      resource: string;
      namespace: string;
      name: string;
      type: StoredEvent["type"];
      data: KubeObject;
    }>({ name: `api_events_${uptoRv !== undefined ? "u" : ""}${resource ? "r" : ""}`, text: sql, values: args });
    return r.rows.map((x) => ({
      rv: Number(x.rv),
      group: x.api_group,
      plural: x.resource,
      namespace: x.namespace,
      name: x.name,
      type: x.type,
      object: x.data,
    }));
  }

  /**
   * Drops history beyond what watches may resume from: keeps at most
   * `keepEvents` events and none older than `keepSeconds`. Returns the new
   * compacted revision.
   */
  async compact(keepEvents: number, keepSeconds: number): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const r = await client.query<{ cut: string | null }>(
        `SELECT max(rv) AS cut FROM api_events
          WHERE rv <= (SELECT rv FROM api_revision WHERE id=1) - $1
             OR created_at < now() - make_interval(secs => $2)`,
        [keepEvents, keepSeconds],
      );
      const cut = r.rows[0]?.cut;
      if (cut !== null && cut !== undefined) {
        await client.query("DELETE FROM api_events WHERE rv <= $1", [cut]);
        await client.query("UPDATE api_revision SET compacted_rv = GREATEST(compacted_rv, $1) WHERE id=1", [cut]);
      }
      await client.query("COMMIT");
      const c = await client.query<{ compacted_rv: string }>("SELECT compacted_rv FROM api_revision WHERE id=1");
      return Number(c.rows[0]?.compacted_rv ?? 0);
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
}
