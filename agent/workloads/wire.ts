/**
 * Wires one membership's workload supervisor into the agent's snapshot loop:
 *
 *   const w = superviseWorkloads(sync, { log });   // in runMembership's onSync, before boot
 *   ...
 *   await w.stop();                                 // agent shutdown
 *
 * - Desired state: every snapshot in force reaches the supervisor through
 *   MembershipSync.subscribe, i.e. the verified checkpoint at boot (also a
 *   stale one: the agent keeps running from its last verified snapshot while
 *   the control plane is down) and each snapshot accepted afterwards.
 *   Nothing else calls apply(), so nothing destructive happens before the
 *   first verified snapshot.
 * - One supervisor per membership state directory (`<dir>/workloads/`), so
 *   two memberships of one host never adopt or stop each other's processes.
 * - Status: the supervisor's changes go to one WorkloadReporter, which POSTs
 *   `/v1/status/workloads` over the membership's mTLS transport. Nothing is
 *   reported before the first apply (an empty pre-snapshot list would
 *   overwrite the last truthful report); right after it, the full list is
 *   reported once even if it did not change, so a report left over from
 *   before an agent restart is replaced.
 * - Renewal: the reporter's transport follows the membership's certificate
 *   (re-read from disk when the serial changed or the server says
 *   CertificateSuperseded).
 * - stop(): stops the loop and the reporter; workloads keep running and are
 *   adopted by the next agent (supervisor.ts).
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import type { Logger } from "../../lib/log.js";
import type { SnapshotPayload, SnapshotWorkload } from "../../lib/snapshot/format.js";
import { WORKLOAD_STATUS_KIND } from "../../lib/workloads/protocol.js";
import type { StoredIdentity } from "../enroll/identity-store.js";
import type { MembershipSync } from "../sync/snapshot-sync.js";
import { statusSender } from "../sync/status-sender.js";
import { WorkloadReporter } from "./reporter.js";
import { WorkloadSupervisor, type WorkloadSupervisorOptions } from "./supervisor.js";

/** Options of superviseWorkloads. */
export interface SuperviseWorkloadsOptions {
  log: Logger;
  /** Initial identity of the membership (default: loaded from the sync's directory on first send). */
  identity?: StoredIdentity;
  /** Passed through to the supervisor (tests, benchmarks). */
  supervisor?: Omit<WorkloadSupervisorOptions, "stateDir" | "log" | "onStatusChange">;
  /** Replaces the HTTPS send (tests). */
  send?: (report: StatusReport) => Promise<void>;
  /** Maps the snapshot's workloads before the supervisor gets them (the update manager runs channel-bound ones from their release slot). */
  rewrite?: (desired: readonly SnapshotWorkload[]) => SnapshotWorkload[];
}

/** A membership's running supervisor and reporter. */
export interface SupervisedWorkloads {
  readonly supervisor: WorkloadSupervisor;
  readonly reporter: WorkloadReporter;
  /** Applies the last snapshot's workloads again (through rewrite); nothing before the first snapshot. */
  reapply(): void;
  /** Stops the supervisor loop and the reporter, leaving workloads running. */
  stop(): Promise<void>;
}

/** See the module comment. */
export function superviseWorkloads(sync: MembershipSync, o: SuperviseWorkloadsOptions): SupervisedWorkloads {
  const log = o.log.with({ cluster: sync.status.cluster, node: sync.status.node });
  const sender = o.send === undefined ? statusSender(sync.dir, o.identity, WORKLOAD_STATUS_KIND) : undefined;
  const send = o.send ?? sender?.send;
  if (send === undefined) throw new Error("workload status: no sender");
  const reporter = new WorkloadReporter({ send, log });
  let applied = false;
  const supervisor = new WorkloadSupervisor({
    ...o.supervisor,
    stateDir: sync.dir,
    log,
    onStatusChange: (s) => {
      if (applied) reporter.update(s);
    },
  });
  let stopped = false;
  let last: SnapshotPayload | undefined;
  const applyLast = (): void => {
    if (last !== undefined && !stopped) supervisor.apply(o.rewrite === undefined ? last.workloads : o.rewrite(last.workloads), last.identity.membership);
  };
  sync.subscribe((snapshot, held) => {
    if (stopped) return;
    const p = snapshot.payload;
    last = p;
    applyLast();
    if (!applied) {
      applied = true;
      log.info("workload supervisor has its first desired set", { serial: held.serial, source: held.source, stale: held.stale, workloads: p.workloads.length });
      void supervisor.settle().then(() => {
        if (!stopped) reporter.update(supervisor.status());
      });
    }
  });
  return {
    supervisor,
    reporter,
    reapply: applyLast,
    async stop() {
      stopped = true;
      await supervisor.stop();
      // No final flush: with the control plane down it would hold shutdown for
      // the request timeout; the next agent reports the adopted state anyway.
      reporter.close();
      sender?.close();
    },
  };
}
