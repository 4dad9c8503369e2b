/**
 * Registers the JoinToken kind: its controller, which follows new
 * JoinRequests to their token (a token's uses change when the enrollment
 * API accepts a request), and the orphan sweep of token rows.
 */
import { RESOURCES } from "../../lib/api/types.generated.js";
import type { FabricKind } from "../kind.js";
import type { JoinRequestObject as JoinRequest, JoinTokenObject as JoinToken } from "../objects.js";
import { Controller, IgnoreUpdates, watchSecondary, runOrphanSweeps } from "../runtime/index.js";
import { JoinTokenReconciler } from "./reconciler.js";

/** See the module comment. */
export const joinTokenKind: FabricKind = {
  kind: "JoinToken",
  setup(mgr, d) {
    const informer = mgr.informerFor<JoinToken>(RESOURCES.JoinToken, "JoinToken");
    const requests = mgr.informerFor<JoinRequest>(RESOURCES.JoinRequest, "JoinRequest");
    const controller = new Controller<JoinToken>({
      name: "jointoken",
      kind: "JoinToken",
      informer,
      reconciler: new JoinTokenReconciler({
        informer,
        tokens: d.stores.tokens,
        clusters: d.stores.clusters,
        api: d.api,
        core: d.core,
        expiredRetentionMs: d.settings.enrollment?.expiredTokenRetentionMs,
        events: d.events,
      }),
      watches: [watchSecondary(requests, (r) => [{ name: r.spec.tokenRef.name }], IgnoreUpdates)],
      workers: 2,
      registry: d.registry,
      log: d.log.with({ controller: "jointoken" }),
    });
    mgr.add(controller);
    mgr.addRunnable("jointoken orphan sweep", (signal) =>
      runOrphanSweeps({ controller, informer, rowNames: () => d.stores.tokens.names(), intervalMs: d.settings.sweepIntervalMs, log: d.log }, signal),
    );
  },
};
