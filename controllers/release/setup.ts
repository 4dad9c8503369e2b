/**
 * Registers the Release kind: its controller, which also re-verifies a
 * cluster's releases when the FabricCluster (its release trust) changes
 * and a release's artifact is pushed (artifact-listener.ts), and the orphan
 * sweep of release rows.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { FabricClusterObject } from "../objects.js";
import { Controller, watchSecondary, runOrphanSweeps } from "../runtime/index.js";
import { listenForArtifacts, releasesWaitingFor } from "./artifact-listener.js";
import { ReleaseReconciler, type ReleaseObject } from "./reconciler.js";

export const releaseKind: FabricKind = {
  kind: "Release",
  setup(mgr, d) {
    const informer = mgr.informerFor<ReleaseObject>(RESOURCES.Release, "Release");
    const clusters = mgr.informerFor<FabricClusterObject>(RESOURCES.FabricCluster, "FabricCluster");
    const releases = d.stores.releases;
    const controller = new Controller<ReleaseObject>({
      name: "release",
      kind: "Release",
      informer,
      reconciler: new ReleaseReconciler({ informer, clusters, releases, pool: d.pool, api: d.api }),
      watches: [
        watchSecondary(clusters, (c) => informer.keysWhere((r) => r.spec.cluster === c.metadata.name)),
      ],
      workers: 1,
      registry: d.registry,
      log: d.log.with({ controller: "release" }),
    });
    mgr.add(controller);
    mgr.addRunnable("release artifact listener", (signal) =>
      listenForArtifacts(d.pool, (sha256) => {
        for (const name of releasesWaitingFor(informer.list(), sha256)) controller.enqueue({ name });
      }, d.log, signal),
    );
    mgr.addRunnable("release orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => releases.names(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
  },
};
