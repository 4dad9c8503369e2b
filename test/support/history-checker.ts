/**
 * A history checker for fenced leases (docs/vpn.md, design note "A fenced
 * single-active lease in PostgreSQL"), in the manner of Jepsen's: clients
 * record every operation as invoke, then ok / fail / info (info: outcome
 * unknown, maybe applied), each with the test process's monotonic time;
 * the database's grant history (vpn_grants, database clock) and the fenced
 * sink's accepted tokens complete the picture. Checks:
 *
 *  1. tokens unique: no two acknowledged grants of a connection share a token;
 *  2. real-time order implies token order: a grant acknowledged before
 *     another was invoked has the lower token;
 *  3. a grant starts no earlier than the previous grant ended (expired or,
 *     earlier, released / fenced), by the database clock, and tokens grow
 *     in grant order;
 *  4. the previous holder's local deadline is before the next grant: the
 *     time until which a client believed it held token t (its last
 *     deadline, cut short by a LeaseLost or a release) is before the
 *     database granted t' > t. Monotonic times are put on the database's
 *     clock through performance.timeOrigin (same host, same clock);
 *  5. accepted tokens never decrease at a fenced sink.
 *
 * A violation of 4 is an overlap: two nodes believed they held the lease.
 */
import { performance } from "node:perf_hooks";

/** The operations a lease client records. */
export type LeaseOp = "acquire" | "renew" | "release" | "write";

/** One history entry. */
export interface HistoryEntry {
  id: number;
  process: string;
  type: "invoke" | "ok" | "fail" | "info";
  f: LeaseOp;
  connection: string;
  token?: number;
  /** Monotonic deadline the client set with this ok (acquire, renew). */
  deadline?: number;
  /** performance.now() at the event. */
  mono: number;
  /** Pairs completions with their invoke. */
  invokeId?: number;
}

/** One row of the database's grant history. */
export interface DbGrant {
  connection: string;
  token: number;
  holder: string;
  grantedAt: Date;
  endedAt?: Date;
  endReason?: string;
}

/** Outcome of a check. */
export interface CheckResult {
  violations: string[];
  /** Violations of check 4 (overlapping holders). */
  overlaps: number;
  stats: { grants: number; busy: number; renewals: number; lost: number; releases: number; writesAccepted: number; writesRefused: number; maxOverlapMs: number };
}

/** A recorder shared by all clients of a run. */
export class History {
  readonly entries: HistoryEntry[] = [];
  private readonly invokes = new Map<number, HistoryEntry>();
  private next = 1;

  /** Records an invoke; returns its id for the completion. */
  invoke(process: string, f: LeaseOp, connection: string, token?: number): number {
    const id = this.next++;
    const e: HistoryEntry = { id, process, type: "invoke", f, connection, ...(token !== undefined ? { token } : {}), mono: performance.now() };
    this.entries.push(e);
    this.invokes.set(id, e);
    return id;
  }

  private complete(invokeId: number, type: "ok" | "fail" | "info", v: { token?: number; deadline?: number } = {}): void {
    const inv = this.invokes.get(invokeId);
    if (inv === undefined) throw new Error(`no invoke ${invokeId}`);
    this.entries.push({ id: this.next++, process: inv.process, type, f: inv.f, connection: inv.connection, ...(v.token !== undefined || inv.token !== undefined ? { token: v.token ?? inv.token } : {}), ...(v.deadline !== undefined ? { deadline: v.deadline } : {}), mono: performance.now(), invokeId });
  }

  ok(invokeId: number, v?: { token?: number; deadline?: number }): void {
    this.complete(invokeId, "ok", v);
  }

  fail(invokeId: number, v?: { token?: number }): void {
    this.complete(invokeId, "fail", v);
  }

  info(invokeId: number, v?: { token?: number }): void {
    this.complete(invokeId, "info", v);
  }
}

/** Monotonic milliseconds of this process to wall-clock milliseconds. */
export function monoToWall(mono: number): number {
  return performance.timeOrigin + mono;
}

/** Runs the checks of the module comment. `sink` maps a connection to the tokens the fenced sink accepted, in order. */
export function checkLeaseHistory(h: History, grants: readonly DbGrant[], sink: ReadonlyMap<string, readonly number[]>, sinkRefused = 0): CheckResult {
  const violations: string[] = [];
  const byId = new Map(h.entries.map((e) => [e.id, e]));
  const oks = h.entries.filter((e) => e.type === "ok");
  const acquires = oks.filter((e) => e.f === "acquire" && e.token !== undefined).map((e) => ({ ok: e, inv: byId.get(e.invokeId ?? -1)! }));
  let writesAccepted = 0;

  // 1. tokens unique
  const seen = new Map<string, string>();
  for (const a of acquires) {
    const k = `${a.ok.connection}#${a.ok.token}`;
    const other = seen.get(k);
    if (other !== undefined) violations.push(`token ${a.ok.token} of ${a.ok.connection} granted to ${other} and ${a.ok.process}`);
    seen.set(k, a.ok.process);
  }

  // 2. real-time order implies token order
  const perConn = new Map<string, typeof acquires>();
  for (const a of acquires) perConn.set(a.ok.connection, [...(perConn.get(a.ok.connection) ?? []), a]);
  for (const [conn, list] of perConn) {
    const byOk = [...list].sort((x, y) => x.ok.mono - y.ok.mono);
    // For each b, every a acknowledged before b was invoked must have a lower token: compare with the max such token.
    const byInv = [...list].sort((x, y) => x.inv.mono - y.inv.mono);
    let i = 0;
    let maxBefore = -1;
    for (const b of byInv) {
      while (i < byOk.length && byOk[i]!.ok.mono < b.inv.mono) maxBefore = Math.max(maxBefore, byOk[i++]!.ok.token ?? -1);
      if ((b.ok.token ?? 0) <= maxBefore) violations.push(`${conn}: token ${b.ok.token} (${b.ok.process}) invoked after token ${maxBefore} was acknowledged`);
    }
  }

  // 3. database grant history
  const dbByConn = new Map<string, DbGrant[]>();
  for (const g of grants) dbByConn.set(g.connection, [...(dbByConn.get(g.connection) ?? []), g]);
  for (const [conn, list] of dbByConn) {
    list.sort((x, y) => x.token - y.token);
    for (let k = 1; k < list.length; k++) {
      const prev = list[k - 1]!;
      const next = list[k]!;
      if (prev.endedAt === undefined) violations.push(`${conn}: grant ${next.token} while grant ${prev.token} is open`);
      else if (next.grantedAt.getTime() < prev.endedAt.getTime()) violations.push(`${conn}: grant ${next.token} at ${next.grantedAt.toISOString()} before grant ${prev.token} ended (${prev.endReason}) at ${prev.endedAt.toISOString()}`);
      if (next.grantedAt.getTime() < prev.grantedAt.getTime()) violations.push(`${conn}: token ${next.token} granted before token ${prev.token}`);
    }
  }

  // 4. the holder's local deadline is before the next grant
  let overlaps = 0;
  let maxOverlapMs = 0;
  const dbGrant = new Map(grants.map((g) => [`${g.connection}#${g.token}`, g]));
  const believed = new Map<string, { conn: string; token: number; process: string; until: number }>();
  for (const e of h.entries) {
    if (e.token === undefined) continue;
    const k = `${e.connection}#${e.token}`;
    if (e.type === "ok" && (e.f === "acquire" || e.f === "renew") && e.deadline !== undefined) {
      const b = believed.get(k);
      believed.set(k, { conn: e.connection, token: e.token, process: e.process, until: Math.max(b?.until ?? -Infinity, e.deadline) });
    }
  }
  // Cut short by a LeaseLost renewal or a release (the client stops believing when it sends the release or hears "lost").
  for (const e of h.entries) {
    if (e.token === undefined) continue;
    const b = believed.get(`${e.connection}#${e.token}`);
    if (b === undefined) continue;
    if ((e.f === "renew" && e.type === "fail") || (e.f === "release" && e.type === "invoke")) b.until = Math.min(b.until, e.mono);
  }
  for (const b of believed.values()) {
    const later = grants.filter((g) => g.connection === b.conn && g.token > b.token).sort((x, y) => x.token - y.token)[0];
    if (later === undefined) continue;
    const over = monoToWall(b.until) - later.grantedAt.getTime();
    if (over > 0) {
      overlaps++;
      maxOverlapMs = Math.max(maxOverlapMs, over);
      if (overlaps <= 20) violations.push(`${b.conn}: ${b.process} believed it held token ${b.token} ${over.toFixed(0)} ms after token ${later.token} was granted to ${later.holder}`);
    }
    if (!dbGrant.has(`${b.conn}#${b.token}`)) violations.push(`${b.conn}: token ${b.token} acknowledged to ${b.process} has no grant row`);
  }
  if (overlaps > 20) violations.push(`... ${overlaps - 20} more overlaps`);

  // 5. accepted tokens never decrease at the fenced sink
  for (const [conn, tokens] of sink) {
    writesAccepted += tokens.length;
    for (let k = 1; k < tokens.length; k++) if (tokens[k]! < tokens[k - 1]!) violations.push(`${conn}: the sink accepted token ${tokens[k]} after ${tokens[k - 1]}`);
  }

  const count = (f: LeaseOp, type: HistoryEntry["type"]): number => h.entries.filter((e) => e.f === f && e.type === type).length;
  return {
    violations,
    overlaps,
    stats: { grants: count("acquire", "ok"), busy: count("acquire", "fail"), renewals: count("renew", "ok"), lost: count("renew", "fail"), releases: count("release", "ok"), writesAccepted, writesRefused: sinkRefused, maxOverlapMs },
  };
}
