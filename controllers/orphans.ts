/**
 * Level-based cleanup of rows whose object is gone, also when the delete
 * happened while no controller was running (no finalizers needed): whenever
 * a controller starts running with synced caches, and then periodically, the
 * names of projected rows missing from the cache are enqueued. The
 * reconciler sees no object and deletes the rows (fenced and audited).
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "../lib/log.js";
import { sleep, realClock, type Controller, type Informer } from "./runtime/index.js";

/** Options of runOrphanSweeps. */
export interface OrphanSweepOptions<T extends KubernetesObject> {
  controller: Controller<T>;
  informer: Informer<T>;
  /** Names of the rows this controller projects (cluster-scoped kinds). */
  rowNames: () => Promise<string[]>;
  /** Sweep again this often while running (default 60 s). */
  intervalMs?: number;
  /** How often to check whether the controller started (default 250 ms). */
  pollMs?: number;
  log: Logger;
}

/** Enqueues the names of orphaned rows; returns how many. */
export async function sweepOnce<T extends KubernetesObject>(o: OrphanSweepOptions<T>): Promise<number> {
  let n = 0;
  for (const name of await o.rowNames()) {
    if (o.informer.get({ name }) === undefined) {
      o.controller.enqueue({ name });
      n++;
    }
  }
  if (n > 0) o.log.info("orphaned rows queued for cleanup", { controller: o.controller.name, rows: n });
  return n;
}

/** Runs sweeps until signal aborts (see the module comment). */
export async function runOrphanSweeps<T extends KubernetesObject>(o: OrphanSweepOptions<T>, signal: AbortSignal): Promise<void> {
  const interval = o.intervalMs ?? 60_000;
  const poll = o.pollMs ?? 250;
  let swept = false;
  let last = 0;
  while (!signal.aborted) {
    const running = o.controller.isRunning() && o.informer.hasSynced();
    if (!running) swept = false;
    else if (!swept || realClock.now() - last >= interval) {
      try {
        await sweepOnce(o);
        swept = true;
        last = realClock.now();
      } catch (err) {
        o.log.warn("orphan sweep failed", { controller: o.controller.name, error: err });
      }
    }
    await sleep(realClock, poll, signal);
  }
}
