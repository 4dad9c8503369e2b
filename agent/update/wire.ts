/**
 * Wires one membership's workload updates into the agent's snapshot loop,
 * beside its workload supervisor (agent/workloads/wire.ts):
 *
 *   let w: SupervisedWorkloads;
 *   const u = superviseUpdates(sync, { log, supervisor: () => w.supervisor, reapply: () => w.reapply() });
 *   w = superviseWorkloads(sync, { log, rewrite: (d) => u.rewrite(d) });
 *
 * Every verified snapshot in force reaches the UpdateManager (manager.ts);
 * its states go to an UpdateReporter (status kind `updates`) over the
 * membership's mTLS transport. stop() stops driving and reporting; what runs
 * keeps running and the next agent resumes from the persisted states.
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import type { SnapshotWorkload } from "../../lib/snapshot/format.js";
import type { StoredIdentity } from "../enroll/identity-store.js";
import type { MembershipSync } from "../sync/snapshot-sync.js";
import { statusSender } from "../sync/status-sender.js";
import type { WorkloadSupervisor } from "../workloads/supervisor.js";
import { UPDATE_TEST_HOLD_ENV, UpdateManager } from "./manager.js";
import { UPDATES_STATUS_KIND, UpdateReporter } from "./reporter.js";

export interface SuperviseUpdatesOptions {
  log: Logger;
  identity?: StoredIdentity;
  supervisor: () => WorkloadSupervisor;
  reapply: () => void;
  /** Replaces the HTTPS send (tests). */
  send?: (report: StatusReport) => Promise<void>;
}

export interface SupervisedUpdates {
  readonly manager: UpdateManager;
  rewrite(desired: readonly SnapshotWorkload[]): SnapshotWorkload[];
  stop(): void;
}

/** See the module comment. */
export function superviseUpdates(sync: MembershipSync, o: SuperviseUpdatesOptions): SupervisedUpdates {
  const log = o.log.with({ cluster: sync.status.cluster, node: sync.status.node, part: "updates" });
  const sender = o.send === undefined ? statusSender(sync.dir, o.identity, UPDATES_STATUS_KIND) : undefined;
  const send = o.send ?? sender?.send;
  if (send === undefined) throw new Error("update status: no sender");
  const reporter = new UpdateReporter({ send, log });
  const manager = new UpdateManager({ dir: sync.dir, supervisor: o.supervisor, reapply: o.reapply, onReport: (r) => reporter.update(r), log, testHold: process.env[UPDATE_TEST_HOLD_ENV] || undefined });
  let stopped = false;
  sync.subscribe((snapshot) => {
    if (stopped) return;
    manager.apply(snapshot.payload).catch((err: unknown) => log.error("workload updates could not start", { err }));
  });
  return {
    manager,
    rewrite: (d) => manager.rewrite(d),
    stop() {
      stopped = true;
      manager.stop();
      reporter.close();
      sender?.close();
    },
  };
}
