/**
 * Level-based cleanup of rows whose object is gone, also when the delete
 * happened while no controller was running (no finalizers needed): whenever
 * a controller starts running with synced caches, and then periodically, the
 * names of projected rows missing from the cache are enqueued. The
 * reconciler sees no object and deletes the rows (fenced and audited).
 *
 * A row counts as orphaned only when two sweeps at least `confirmMs` apart
 * both find it without an object: some rows legitimately exist a moment
 * before their object (enrollment commits a join request's row, then
 * creates the JoinRequest object; the informer sees it a little later), and
 * one look could delete such a row under its agent.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "../../lib/log.js";
import { realClock, sleep } from "./clock.js";
import type { Controller } from "./controller.js";
import type { Informer } from "./informer.js";
import { parseCacheKey } from "./object.js";

/** Options of runOrphanSweeps. */
export interface OrphanSweepOptions<T extends KubernetesObject> {
  controller: Controller<T>;
  informer: Informer<T>;
  /** The rows this controller projects, by their objects' cache keys: "name", or "namespace/name" for a namespaced kind. */
  rowNames: () => Promise<string[]>;
  /** Sweep again this often while running (default 60 s). */
  intervalMs?: number;
  /** How often to check whether the controller started (default 250 ms). */
  pollMs?: number;
  /** Least time between the two sightings that make a row an orphan (default: the interval, at least 2 s and at most 5 s). */
  confirmMs?: number;
  log: Logger;
}

/**
 * Enqueues the names of rows without an object that were already without one
 * in the previous sweep (`suspects`, updated in place to this sweep's
 * findings); returns how many were enqueued.
 */
export async function sweepOnce<T extends KubernetesObject>(o: OrphanSweepOptions<T>, suspects: Set<string>): Promise<number> {
  let n = 0;
  const missing = new Set<string>();
  for (const key of await o.rowNames()) {
    if (o.informer.getByKey(key) !== undefined) continue;
    missing.add(key);
    if (suspects.has(key)) {
      o.controller.enqueue(parseCacheKey(key));
      n++;
    }
  }
  suspects.clear();
  for (const key of missing) suspects.add(key);
  if (n > 0) o.log.info("orphaned rows queued for cleanup", { controller: o.controller.name, rows: n });
  return n;
}

/** Runs sweeps until signal aborts (see the module comment). */
export async function runOrphanSweeps<T extends KubernetesObject>(o: OrphanSweepOptions<T>, signal: AbortSignal): Promise<void> {
  const interval = o.intervalMs ?? 60_000;
  const poll = o.pollMs ?? 250;
  const confirm = o.confirmMs ?? Math.max(2_000, Math.min(interval, 5_000));
  const suspects = new Set<string>();
  let swept = false;
  let last = 0;
  while (!signal.aborted) {
    const running = o.controller.isRunning() && o.informer.hasSynced();
    const since = realClock.now() - last;
    if (!running) {
      swept = false;
      suspects.clear();
    } else if (!swept || since >= interval || (suspects.size > 0 && since >= confirm)) {
      try {
        await sweepOnce(o, suspects);
        swept = true;
        last = realClock.now();
      } catch (err) {
        o.log.warn("orphan sweep failed", { controller: o.controller.name, error: err });
      }
    }
    await sleep(realClock, poll, signal);
  }
}
