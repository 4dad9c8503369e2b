/**
 * Paginated lists (limit/continue) through client-node are one consistent
 * snapshot, as kube-apiserver serves them: later pages show the objects as
 * they were at the first page's resourceVersion, whatever was created,
 * changed or deleted in between.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as k8s from "@kubernetes/client-node";
import { sharedControlPlane, startTestControlPlane } from "../support/controlplane.js";

const group = "accessfabric.io";
const version = "v1alpha1";
const plural = "nodegroups";

interface Item {
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> };
  spec: { cluster: string; description?: string };
}
interface Page {
  metadata: { resourceVersion: string; continue?: string };
  items: Item[];
}

describe("API server: paginated lists are one snapshot", function () {
  this.timeout(60_000);

  it("serves continue pages as of the first page's resourceVersion", async () => {
    const { kc } = await sharedControlPlane();
    const api = kc.makeApiClient(k8s.CustomObjectsApi);
    const run = randomUUID().slice(0, 8);
    const selector = `pages=${run}`;
    const create = (name: string, description: string) =>
      api.createClusterCustomObject({
        group, version, plural,
        body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name: `${run}-${name}`, labels: { pages: run } }, spec: { cluster: "pg", description } },
      });
    for (const n of ["a", "b", "c", "d", "e"]) await create(n, "before");
    const list = (cont?: string) =>
      api.listClusterCustomObject({ group, version, plural, labelSelector: selector, limit: 2, ...(cont ? { _continue: cont } : {}) }) as Promise<Page>;

    const p1 = await list();
    assert.deepEqual(p1.items.map((i) => i.metadata.name), [`${run}-a`, `${run}-b`]);
    assert.ok(p1.metadata.continue);

    // Between pages: change c, delete d, create bb (sorts between b and c) and f.
    await api.patchClusterCustomObject(
      { group, version, plural, name: `${run}-c`, body: { spec: { description: "after" } } },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
    );
    await api.deleteClusterCustomObject({ group, version, plural, name: `${run}-d` });
    await create("bb", "after");
    await create("f", "after");

    const p2 = await list(p1.metadata.continue);
    assert.equal(p2.metadata.resourceVersion, p1.metadata.resourceVersion, "every page reports the first page's revision");
    assert.deepEqual(p2.items.map((i) => [i.metadata.name, i.spec.description]), [[`${run}-c`, "before"], [`${run}-d`, "before"]]);
    assert.ok(p2.metadata.continue);
    const p3 = await list(p2.metadata.continue);
    assert.deepEqual(p3.items.map((i) => i.metadata.name), [`${run}-e`]);
    assert.equal(p3.metadata.continue ?? "", "");
    for (const item of [...p2.items, ...p3.items]) {
      assert.ok(Number(item.metadata.resourceVersion) <= Number(p1.metadata.resourceVersion), "no item newer than the list");
    }

    // A new list sees the present.
    const now = (await api.listClusterCustomObject({ group, version, plural, labelSelector: selector })) as Page;
    assert.deepEqual(
      now.items.map((i) => [i.metadata.name.replace(`${run}-`, ""), i.spec.description]),
      [["a", "before"], ["b", "before"], ["bb", "after"], ["c", "after"], ["e", "before"], ["f", "after"]],
    );
  });

  it("answers 410 Expired for a continue page whose state was compacted away", async () => {
    // Own control plane: compaction here must not reach other tests' history.
    const t = await startTestControlPlane({ compactIntervalMs: 3_600_000 });
    try {
      const api = t.kc.makeApiClient(k8s.CustomObjectsApi);
      const create = (name: string) =>
        api.createClusterCustomObject({ group, version, plural, body: { apiVersion: `${group}/${version}`, kind: "NodeGroup", metadata: { name }, spec: { cluster: "pg" } } });
      // x is written first; enough later writes push its event out of a 5-event history.
      await create("a");
      const x = (await create("x")) as Item;
      for (let i = 0; i < 6; i++) await create(`filler-${i}`);
      const p1 = (await api.listClusterCustomObject({ group, version, plural, limit: 1 })) as Page;
      assert.ok(p1.metadata.continue);
      // Compact to 5 events: the list's revision is still retained, x's state at it is not,
      // and x changes after it: that page can no longer be shown as it was.
      await t.cp.api.compact(5, 3600);
      const rev = await t.cp.db.pool.query<{ compacted_rv: string }>("SELECT compacted_rv FROM api_revision WHERE id = 1");
      const compacted = Number(rev.rows[0]?.compacted_rv);
      assert.ok(compacted > Number(x.metadata.resourceVersion) && compacted <= Number(p1.metadata.resourceVersion), "x's write compacted, the list's revision retained");
      await api.patchClusterCustomObject(
        { group, version, plural, name: "x", body: { spec: { description: "later" } } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
      );
      await assert.rejects(
        api.listClusterCustomObject({ group, version, plural, limit: 1, _continue: p1.metadata.continue }),
        (err: unknown) => err instanceof k8s.ApiException && err.code === 410,
      );
    } finally {
      await t.stop();
    }
  });
});
