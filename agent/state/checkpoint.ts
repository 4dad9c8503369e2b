/**
 * The agent's checkpoint of its last verified snapshot, in the membership's
 * state directory. It is what lets the host keep converging to the last good
 * desired state across restarts while the control plane is unreachable
 * (ARCHITECTURE.md, "The agent").
 *
 * Writing: only bytes that verifySnapshot accepted, atomically (see
 * ./atomic-file.ts), mode 0600. Save the checkpoint *before* advancing the
 * trust state (./trust.ts): then the checkpoint's serial is never lower than
 * the trusted one, and a checkpoint that is lower was put back by someone.
 *
 * Loading at boot re-verifies the stored bytes with the full verifier
 * (size, shape, trusted key, signature, cluster and node binding, term and
 * serial against the persisted trust state), because the disk is not a
 * trusted source: it may be corrupted, restored from an old backup or edited.
 *
 * Decision on expiry: an expired checkpoint still boots the host, in "stale"
 * mode (`stale: true`, reported). The snapshot's lifetime protects a *live*
 * agent from being frozen on an old state by someone who withholds updates;
 * at boot with no control plane, the last verified state is still the best
 * desired state the host has, and the architecture asks the agent to keep
 * working from it. Falling back to "no snapshot" would make the agent do
 * nothing (it acts only after a complete verified snapshot), which on a
 * reboot during an outage would take every workload down. The agent should
 * surface staleness in its status and replace the checkpoint with the first
 * fresh snapshot it receives.
 *
 * Any other failure means the file is not a snapshot this node may use: it is
 * renamed to `snapshot.json.corrupt-<ts>`, reported, and load returns
 * undefined (boot as if never configured: nothing destructive until the first
 * verified snapshot arrives). It never throws for bad content.
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { SignedSnapshot } from "../../lib/snapshot/format.js";
import { ErrMalformed, SnapshotError } from "../../lib/snapshot/errors.js";
import { DEFAULT_MAX_SNAPSHOT_BYTES, inspectSnapshot, type VerifyContext } from "../../lib/snapshot/verify.js";
import { moveAside, removeStaleTemps, writeFileAtomic } from "./atomic-file.js";

/** File name of the checkpoint inside a membership's state directory. */
export const CHECKPOINT_FILE = "snapshot.json";

/** Something load found worth telling an operator about. */
export type CheckpointEvent =
  /** The checkpoint failed verification and was moved aside (movedTo undefined if even that failed). */
  | { kind: "corrupt"; file: string; movedTo?: string; error: SnapshotError; moveError?: unknown }
  /** The checkpoint is valid but expired: the agent runs stale. */
  | { kind: "stale"; file: string; expiresAt: string; serial: number }
  /** Temporary files of an interrupted save were removed. */
  | { kind: "temp-removed"; files: string[] };

/** Verification context for a checkpoint: the membership's trust plus a way to hear about problems. */
export interface CheckpointContext extends VerifyContext {
  /** Called for each {@link CheckpointEvent}; the agent logs them and reflects them in its status. */
  report?: (event: CheckpointEvent) => void;
}

/** A checkpoint that passed verification. `stale`: it is expired (see the module comment). */
export interface LoadedCheckpoint {
  snapshot: SignedSnapshot;
  stale: boolean;
}

/**
 * Atomically replaces the checkpoint in `dir` with `bytes` (mode 0600,
 * fsynced file and directory). `bytes` must be exactly what verifySnapshot
 * accepted. Throws on I/O failure; the previous checkpoint is then intact.
 */
export async function saveCheckpoint(dir: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(dir, CHECKPOINT_FILE, bytes);
}

async function readBounded(path: string, maxBytes: number): Promise<Buffer | "missing" | "oversized"> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "missing";
    throw new Error(`reading checkpoint ${path}`, { cause: err });
  }
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) return "oversized";
    return await handle.readFile();
  } catch (err) {
    throw new Error(`reading checkpoint ${path}`, { cause: err });
  } finally {
    await handle.close();
  }
}

/**
 * Loads and re-verifies the checkpoint in `dir` at boot. Returns undefined
 * when there is none or when it was rejected (moved aside and reported);
 * `{ snapshot, stale }` otherwise. Pass the persisted trust state as
 * ctx.lastTerm / ctx.lastSerial. Also removes temporary files left by a save
 * that crashed, so call it before the first save. Throws only for I/O errors
 * other than a missing file, and for a misconfigured trusted key set.
 */
export async function loadCheckpoint(dir: string, ctx: CheckpointContext): Promise<LoadedCheckpoint | undefined> {
  const report = ctx.report ?? (() => undefined);
  const removed = await removeStaleTemps(dir, CHECKPOINT_FILE);
  if (removed.length > 0) report({ kind: "temp-removed", files: removed });

  const file = join(dir, CHECKPOINT_FILE);
  const maxBytes = ctx.maxBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
  const bytes = await readBounded(file, maxBytes);
  if (bytes === "missing") return undefined;

  try {
    if (bytes === "oversized") throw new ErrMalformed(`checkpoint larger than ${maxBytes} bytes`);
    const { snapshot, expired } = inspectSnapshot(bytes, ctx);
    if (expired) {
      report({ kind: "stale", file, expiresAt: snapshot.header.expiresAt, serial: snapshot.header.serial });
    }
    return { snapshot, stale: expired };
  } catch (err) {
    if (!(err instanceof SnapshotError)) throw err;
    try {
      const movedTo = await moveAside(dir, CHECKPOINT_FILE, ctx.now);
      report({ kind: "corrupt", file, movedTo, error: err });
    } catch (moveError) {
      report({ kind: "corrupt", file, error: err, moveError });
    }
    return undefined;
  }
}
