/**
 * Persisted trust state of one cluster membership: the highest authority term
 * and the serial of the last applied snapshot. It is the rollback floor the
 * verifier is given as ctx.lastTerm / ctx.lastSerial.
 *
 * Why a separate file when the checkpoint header carries the same numbers:
 * the checkpoint can be lost or moved aside (corrupt, or signed by a key that
 * has since been rotated out of the trusted set), and the floor must survive
 * that, or a replayed old snapshot would be accepted as the "first" one.
 *
 * Order when applying a snapshot: saveCheckpoint, then saveTrustState with
 * {@link advanceTrust}. A crash in between leaves the trust state one step
 * behind the checkpoint, which is safe (the checkpoint still verifies, and the
 * next advance catches up); the reverse order could leave a floor above the
 * checkpoint and make the agent reject its own checkpoint at boot.
 *
 * The file is not signed: whoever can write the state directory also holds
 * the node's private identity key, so a signature would add nothing. A file
 * that does not parse, or names another cluster or node, is moved aside and
 * reported, and load returns undefined; the agent then takes the floor from
 * its verified checkpoint, if any.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { SnapshotHeader } from "../../lib/snapshot/format.js";
import { moveAside, removeStaleTemps, writeFileAtomic } from "./atomic-file.js";

/** File name of the trust state inside a membership's state directory. */
export const TRUST_FILE = "trust.json";

/** What one membership has seen and applied. Both numbers only grow. */
export interface TrustState {
  formatVersion: 1;
  cluster: string;
  node: string;
  /** Highest authority term of an applied snapshot. */
  lastTerm: number;
  /** Serial of the last applied snapshot. */
  lastSerial: number;
  /** When it last advanced (RFC 3339), for operators. */
  updatedAt: string;
}

/** Something load found worth telling an operator about. */
export type TrustEvent =
  | { kind: "corrupt"; file: string; reason: string; movedTo?: string; moveError?: unknown }
  | { kind: "temp-removed"; files: string[] };

/** Which membership the caller expects, its clock, and a way to hear about problems. */
export interface TrustContext {
  cluster: string;
  node: string;
  now: Date;
  report?: (event: TrustEvent) => void;
}

function problem(v: unknown, ctx: TrustContext): string | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const o = v as Record<string, unknown>;
  if (o.formatVersion !== 1) return `unsupported format version ${JSON.stringify(o.formatVersion)}`;
  if (o.cluster !== ctx.cluster) return `cluster ${JSON.stringify(o.cluster)} is not ${JSON.stringify(ctx.cluster)}`;
  if (o.node !== ctx.node) return `node ${JSON.stringify(o.node)} is not ${JSON.stringify(ctx.node)}`;
  for (const k of ["lastTerm", "lastSerial"] as const) {
    const n = o[k];
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) return `${k} is not a non-negative integer`;
  }
  if (typeof o.updatedAt !== "string") return "updatedAt is not a string";
  return undefined;
}

/**
 * Loads the trust state in `dir`. Returns undefined when there is none, or
 * when it was unusable (moved aside to `trust.json.corrupt-<ts>` and
 * reported). Throws only for I/O errors other than a missing file.
 */
export async function loadTrustState(dir: string, ctx: TrustContext): Promise<TrustState | undefined> {
  const report = ctx.report ?? (() => undefined);
  const removed = await removeStaleTemps(dir, TRUST_FILE);
  if (removed.length > 0) report({ kind: "temp-removed", files: removed });

  const file = join(dir, TRUST_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`reading trust state ${file}`, { cause: err });
  }
  let reason: string | undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
    reason = problem(parsed, ctx);
  } catch (err) {
    reason = `not JSON: ${(err as Error).message}`;
  }
  if (reason === undefined) return parsed as TrustState;
  try {
    const movedTo = await moveAside(dir, TRUST_FILE, ctx.now);
    report({ kind: "corrupt", file, reason, movedTo });
  } catch (moveError) {
    report({ kind: "corrupt", file, reason, moveError });
  }
  return undefined;
}

/**
 * The trust state after applying a snapshot with `header`: never lower than
 * `prev` in term or serial (pure; the verifier has already rejected older
 * snapshots, this is a second guard). Throws if `prev` is for another
 * membership.
 */
export function advanceTrust(prev: TrustState | undefined, header: SnapshotHeader, now: Date): TrustState {
  if (prev !== undefined && (prev.cluster !== header.cluster || prev.node !== header.node)) {
    throw new Error(`advancing trust of ${prev.cluster}/${prev.node} with a snapshot for ${header.cluster}/${header.node}`);
  }
  return {
    formatVersion: 1,
    cluster: header.cluster,
    node: header.node,
    lastTerm: Math.max(prev?.lastTerm ?? 0, header.authorityTerm),
    lastSerial: Math.max(prev?.lastSerial ?? 0, header.serial),
    updatedAt: now.toISOString(),
  };
}

/** Atomically replaces the trust state in `dir` (mode 0600, fsynced file and directory). */
export async function saveTrustState(dir: string, state: TrustState): Promise<void> {
  await writeFileAtomic(dir, TRUST_FILE, Buffer.from(JSON.stringify(state) + "\n", "utf8"));
}
