/**
 * Filtered watches through client-node: an object that starts matching the
 * selector arrives as ADDED, one that stops matching leaves as DELETED, as
 * kube-apiserver does; both when the watch starts from "now" (synthetic
 * ADDED first) and when it resumes from a resourceVersion (what informers and
 * `kubectl get -w` do after their list).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { eventually, sharedControlPlane } from "../support/controlplane.js";

const group = "accessfabric.io";
const version = "v1alpha1";
const plural = "nodegroups";
const path = `/apis/${group}/${version}/${plural}`;

interface Seen {
  type: string;
  name: string;
  tier?: string;
}

describe("API server: filtered watches follow objects in and out of the selector", function () {
  this.timeout(60_000);

  for (const start of ["from a resourceVersion", "from now"] as const) {
    it(`turns label changes into ADDED / MODIFIED / DELETED (${start})`, async () => {
      const { kc } = await sharedControlPlane();
      const api = kc.makeApiClient(k8s.CustomObjectsApi);
      const run = randomUUID().slice(0, 8);
      const labels = (tier: string) => ({ run, tier });
      const create = (name: string, tier: string) =>
        api.createClusterCustomObject({
          group, version, plural,
          body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name, labels: labels(tier) }, spec: { cluster: "sel" } },
        });
      const patch = (name: string, body: object) =>
        api.patchClusterCustomObject(
          { group, version, plural, name, body },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
        );
      // Before the watch: one matching (a), one not matching (b).
      await create(`a-${run}`, "gold");
      await create(`b-${run}`, "silver");
      const list = (await api.listClusterCustomObject({ group, version, plural, labelSelector: `run=${run},tier=gold` })) as {
        metadata: { resourceVersion: string };
      };

      const seen: Seen[] = [];
      const watch = new k8s.Watch(kc);
      const params: Record<string, string> = { labelSelector: `run=${run},tier=gold` };
      if (start === "from a resourceVersion") params.resourceVersion = list.metadata.resourceVersion;
      const req = await watch.watch(
        path,
        params,
        (type, obj: { metadata: { name: string; labels?: Record<string, string> } }) =>
          seen.push({ type, name: obj.metadata.name.replace(`-${run}`, ""), tier: obj.metadata.labels?.tier }),
        () => undefined,
      );
      try {
        if (start === "from now") await eventually(() => seen.length === 1, 10_000);
        await patch(`a-${run}`, { metadata: { labels: { tier: "silver" } } }); // a leaves → DELETED
        await patch(`b-${run}`, { metadata: { labels: { tier: "gold" } } }); // b enters → ADDED
        await patch(`b-${run}`, { spec: { description: "changed" } }); // b changes → MODIFIED
        await patch(`a-${run}`, { spec: { description: "unseen" } }); // a changes outside → nothing
        await create(`c-${run}`, "silver"); // created outside → nothing
        await patch(`c-${run}`, { metadata: { labels: { tier: "gold" } } }); // c enters → ADDED
        await api.deleteClusterCustomObject({ group, version, plural, name: `c-${run}` }); // → DELETED
        await api.deleteClusterCustomObject({ group, version, plural, name: `a-${run}` }); // outside → nothing
        const expected: Seen[] = [
          ...(start === "from now" ? [{ type: "ADDED", name: "a", tier: "gold" }] : []),
          { type: "DELETED", name: "a", tier: "silver" },
          { type: "ADDED", name: "b", tier: "gold" },
          { type: "MODIFIED", name: "b", tier: "gold" },
          { type: "ADDED", name: "c", tier: "gold" },
          { type: "DELETED", name: "c", tier: "gold" },
        ];
        await eventually(() => seen.length >= expected.length, 10_000).catch(() => undefined);
        // Wait a moment more for any event that should not come (the last write is the delete of a).
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual(seen, expected);
      } finally {
        req.abort();
        await api.deleteClusterCustomObject({ group, version, plural, name: `b-${run}` }).catch(() => undefined);
      }
    });
  }
});
