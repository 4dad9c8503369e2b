/**
 * HeartbeatMonitor (leader only): the bridge between `node_heartbeats` and
 * the FabricNode controller. Heartbeats never touch the API server, so no
 * watch event announces them; instead, every `scanIntervalMs` (default
 * min(5 s, grace/4)) one narrow query reads every node's receipt (time,
 * health, version, serial and a digest of the other visible fields), and
 * the monitor enqueues only the nodes whose visible key changed: content,
 * liveness (a heartbeat older than the grace period flips it), or the
 * lastHeartbeatTime publication bucket. Ten thousand nodes heartbeating
 * every 10 s cost one query per scan and no reconcile at all while nothing
 * visible changes.
 */
import type { Logger } from "../../lib/log.js";
import type { HeartbeatReceipt, HeartbeatStore } from "../../lib/state/heartbeats.js";
import { realClock, sleep, type Clock } from "../runtime/index.js";
import { isLive, publishBucket, type LivenessSettings } from "./liveness.js";

/** Dependencies of HeartbeatMonitor. */
export interface HeartbeatMonitorDeps {
  heartbeats: Pick<HeartbeatStore, "receipts">;
  enqueue: (node: string) => void;
  isLeader: () => boolean;
  settings: LivenessSettings;
  scanIntervalMs?: number;
  clock?: Clock;
  log: Logger;
}

/** The part of a receipt that decides whether the FabricNode status may change. */
export function visibleKey(r: HeartbeatReceipt, now: Date, s: LivenessSettings): string {
  const live = isLive(r.receivedAt, now, s.gracePeriodMs);
  return [r.health, r.agentVersion, r.snapshotSerial ?? "", r.visible, live ? "live" : "silent", publishBucket(r.node, r.receivedAt, s.publishIntervalMs)].join("|");
}

/** See the module comment. */
export class HeartbeatMonitor {
  private keys = new Map<string, string>();
  /** Scans done and nodes enqueued (metrics and tests). */
  scans = 0;
  enqueued = 0;

  constructor(private readonly d: HeartbeatMonitorDeps) {}

  private get intervalMs(): number {
    return this.d.scanIntervalMs ?? Math.max(100, Math.min(5000, Math.floor(this.d.settings.gracePeriodMs / 4)));
  }

  /** One scan; returns the nodes enqueued. The first scan of a leadership enqueues every node. */
  async scanOnce(): Promise<number> {
    const rows = await this.d.heartbeats.receipts();
    const now = new Date((this.d.clock ?? realClock).now());
    const next = new Map<string, string>();
    let n = 0;
    for (const r of rows) {
      const key = visibleKey(r, now, this.d.settings);
      next.set(r.node, key);
      if (this.keys.get(r.node) !== key) {
        this.d.enqueue(r.node);
        n++;
      }
    }
    this.keys = next;
    this.scans++;
    this.enqueued += n;
    return n;
  }

  /** Scans while leading until signal aborts; forgets everything when leadership is lost. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.d.isLeader()) {
        try {
          await this.scanOnce();
        } catch (err) {
          this.d.log.warn("heartbeat scan failed", { error: (err as Error).message });
        }
      } else this.keys = new Map();
      await sleep(this.d.clock ?? realClock, this.intervalMs, signal);
    }
  }
}
