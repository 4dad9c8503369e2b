import assert from "node:assert/strict";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Controller } from "../../controllers/runtime/controller.js";
import type { Informer } from "../../controllers/runtime/informer.js";
import type { ObjectKey } from "../../controllers/runtime/object.js";
import { sweepOnce, type OrphanSweepOptions } from "../../controllers/runtime/orphans.js";
import { logger } from "../../lib/log.js";

/** A sweep over `rows` against a cache holding `cached` (cache keys), recording what it enqueues. */
function sweepOf(rows: string[], cached: string[]): { o: OrphanSweepOptions<KubernetesObject>; enqueued: ObjectKey[] } {
  const enqueued: ObjectKey[] = [];
  const informer = { getByKey: (k: string) => (cached.includes(k) ? { metadata: { name: k } } : undefined) } as unknown as Informer<KubernetesObject>;
  const controller = { name: "thing", enqueue: (k: ObjectKey) => enqueued.push(k) } as unknown as Controller<KubernetesObject>;
  return { o: { controller, informer, rowNames: () => Promise.resolve(rows), log: logger("test") }, enqueued };
}

describe("runtime orphan sweep (sweepOnce)", () => {
  it("enqueues a row only when two sweeps in a row found no object for it", async () => {
    const { o, enqueued } = sweepOf(["a", "b"], ["a"]);
    const suspects = new Set<string>();
    assert.equal(await sweepOnce(o, suspects), 0);
    assert.deepEqual([...suspects], ["b"]);
    assert.equal(await sweepOnce(o, suspects), 1);
    assert.deepEqual(enqueued, [{ name: "b" }]);
  });

  it("forgets a suspect whose object appeared in between", async () => {
    const first = sweepOf(["b"], []);
    const suspects = new Set<string>();
    await sweepOnce(first.o, suspects);
    const second = sweepOf(["b"], ["b"]);
    assert.equal(await sweepOnce(second.o, suspects), 0);
    assert.deepEqual(second.enqueued, []);
    assert.equal(suspects.size, 0);
  });

  it("sweeps a namespaced kind's rows by their namespace/name cache keys", async () => {
    const { o, enqueued } = sweepOf(["org-a/vpn-1", "org-b/vpn-2"], ["org-a/vpn-1"]);
    const suspects = new Set<string>();
    await sweepOnce(o, suspects);
    await sweepOnce(o, suspects);
    assert.deepEqual(enqueued, [{ namespace: "org-b", name: "vpn-2" }]);
  });
});
