/**
 * Registers the ReleaseChannel kind: its controller, woken by Releases of
 * its cluster and component (a release verified or rejected), by
 * ServiceWorkloads that reference it, by FabricNodes of its cluster whose
 * labels, group or Ready condition changed, by its FabricCluster (the trust
 * set), and by the agents' update and workload reports (pg_notify
 * 'update_reports' from migrations/018_rollouts.sql, 'workload_reports'
 * from migrations/008); an orphan sweep of rollout rows whose channel is
 * gone; and the "releaseUpdates" snapshot contributor.
 */
import type pg from "pg";
import { RESOURCES } from "../../lib/api/types.generated.js";
import { PgListener } from "../../lib/db/listener.js";
import type { Logger } from "../../lib/log.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject, FabricNodeObject, ServiceWorkloadObject } from "../objects.js";
import { Controller, UpdateWhen, conditionStatusOf, jsonEqual, watchSecondary, runOrphanSweeps, type ObjectKey } from "../runtime/index.js";
import { ReleaseChannelReconciler, type ReleaseChannelObject, type ReleaseObject } from "./reconciler.js";
import { releaseUpdatesContributor } from "./snapshot.js";

/** See the module comment. */
export const releaseChannelKind: FabricKind = {
  kind: "ReleaseChannel",
  setup(mgr, d) {
    const informer = mgr.informerFor<ReleaseChannelObject>(RESOURCES.ReleaseChannel, "ReleaseChannel");
    const releases = mgr.informerFor<ReleaseObject>(RESOURCES.Release, "Release");
    const nodes = mgr.informerFor<FabricNodeObject>(RESOURCES.FabricNode, "FabricNode");
    const clusters = mgr.informerFor<FabricClusterObject>(RESOURCES.FabricCluster, "FabricCluster");
    const workloadObjects = mgr.informerFor<ServiceWorkloadObject>(RESOURCES.ServiceWorkload, "ServiceWorkload");
    const channels = (keep: (c: ReleaseChannelObject) => boolean): ObjectKey[] => informer.keysWhere(keep);
    const ofCluster = (cluster: string | undefined): ObjectKey[] => channels((c) => c.spec.cluster === cluster);
    const wakeNode = mgr.wake("FabricNode");
    const controller = new Controller<ReleaseChannelObject>({
      name: "releasechannel",
      kind: "ReleaseChannel",
      informer,
      reconciler: new ReleaseChannelReconciler({ informer, releases, nodes, clusters, workloadObjects, workloads: d.stores.workloads, rollouts: d.stores.rollouts, releaseRows: d.stores.releases, api: d.api, events: d.events, wakeNode: (name) => wakeNode({ name }) }),
      watches: [
        watchSecondary(releases, (r) => channels((c) => c.spec.cluster === r.spec.cluster && c.spec.component === r.spec.component)),
        watchSecondary(workloadObjects, (w) => (w.spec.releaseChannel === undefined ? [] : [{ name: w.spec.releaseChannel }])),
        watchSecondary(
          nodes,
          (n) => ofCluster(n.spec.cluster),
          UpdateWhen((a, b) => conditionStatusOf(a, "Ready") !== conditionStatusOf(b, "Ready") || a.spec.group !== b.spec.group || !jsonEqual(a.metadata.labels, b.metadata.labels)),
        ),
        watchSecondary(clusters, (c) => ofCluster(c.metadata.name), UpdateWhen((a, b) => !jsonEqual(a.spec.releaseTrust, b.spec.releaseTrust) || !jsonEqual(a.status, b.status))),
      ],
      workers: 2,
      registry: d.registry,
      log: d.log.with({ controller: "releasechannel" }),
    });
    mgr.add(controller);
    mgr.addRunnable("releasechannel orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.rollouts.channelNames(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
    mgr.addRunnable("update report listener", (signal) =>
      listenForUpdateReports(
        d.pool,
        (cluster) => {
          for (const k of cluster === undefined ? channels(() => true) : ofCluster(cluster)) controller.enqueue(k);
        },
        (names) => {
          const all = names.includes("*");
          const bound = new Set(workloadObjects.list().flatMap((w) => (w.spec.releaseChannel !== undefined && (all || names.includes(w.metadata.name ?? "")) ? [w.spec.releaseChannel] : [])));
          for (const name of bound) controller.enqueue({ name });
        },
        d,
        signal,
      ),
    );
    return { snapshotContributors: [releaseUpdatesContributor] };
  },
};

/** Wakes channels on update reports (payload: the cluster) and workload reports (payload: JSON workload names). */
async function listenForUpdateReports(
  pool: pg.Pool,
  onCluster: (cluster: string | undefined) => void,
  onWorkloads: (names: string[]) => void,
  d: { log: Logger },
  signal: AbortSignal,
): Promise<void> {
  let reconnecting = false;
  const log = d.log.with({ part: "update-reports" });
  const listener = new PgListener({
    connection: pool,
    channels: ["update_reports", "workload_reports"],
    onNotification: (n) => {
      if (n.payload === undefined) return;
      if (n.channel === "update_reports") onCluster(n.payload);
      else if (n.channel === "workload_reports") {
        try {
          const names = JSON.parse(n.payload) as unknown;
          if (Array.isArray(names)) onWorkloads(names.filter((x): x is string => typeof x === "string"));
        } catch {
          log.warn("malformed workload report notification", { payload: n.payload.slice(0, 200) });
        }
      }
    },
    onConnect: () => {
      if (reconnecting) onCluster(undefined);
      reconnecting = true;
    },
    meanwhile: "periodic requeues only",
    log,
    retryMs: 1000,
  });
  await listener.run(signal);
}
