import assert from "node:assert/strict";
import {
  ApplyConflictError,
  ApplyInvalidError,
  apply,
  trackUpdate,
  LAST_APPLIED_ANNOTATION,
} from "../../apiserver/fieldmanager/index.js";
import type { ManagedFieldsEntry, Obj } from "../../apiserver/fieldmanager/index.js";
import { isObj } from "../../apiserver/object.js";

const API = "accessfabric.io/v1alpha1";
const T0 = "2024-01-01T00:00:00Z";
const T1 = "2024-01-01T00:01:00Z";
const T2 = "2024-01-01T00:02:00Z";
const T3 = "2024-01-01T00:03:00Z";

/** An applied configuration or stored object of a test kind. */
function obj(body: Obj = {}, metadata: Obj = {}): Obj {
  return { apiVersion: API, kind: "Thing", metadata: { name: "t1", namespace: "default", ...metadata }, ...body };
}

/** A stored object, as the server keeps it after create. */
function stored(body: Obj, metadata: Obj = {}): Obj {
  return obj(body, { uid: "u-1", resourceVersion: "7", creationTimestamp: T0, generation: 1, ...metadata });
}

function managedFields(o: Obj): ManagedFieldsEntry[] {
  const meta = o.metadata;
  if (!isObj(meta) || !Array.isArray(meta.managedFields)) return [];
  return meta.managedFields as ManagedFieldsEntry[];
}

function entry(o: Obj, manager: string, operation: "Apply" | "Update" = "Apply", subresource?: string): ManagedFieldsEntry {
  const found = managedFields(o).find(
    (e) => e.manager === manager && e.operation === operation && e.subresource === subresource,
  );
  assert.ok(found, `expected a ${operation} entry for ${manager}${subresource ? `/${subresource}` : ""}`);
  return found;
}

function managers(o: Obj): string[] {
  return managedFields(o).map((e) => `${e.manager}/${e.operation}${e.subresource ? `/${e.subresource}` : ""}`);
}

function field(o: Obj, ...path: string[]): unknown {
  let v: unknown = o;
  for (const p of path) v = isObj(v) ? v[p] : undefined;
  return v;
}

function conflictOf(fn: () => unknown): ApplyConflictError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApplyConflictError) return err;
    throw err;
  }
  assert.fail("expected an ApplyConflictError");
}

const ssa = (manager: string, now = T1, force = false) => ({ manager, now, force });

describe("fieldmanager", () => {
  describe("fieldsV1 encoding", () => {
    const cases: Array<{ name: string; run: () => Obj; manager: string; operation: "Apply" | "Update"; fields: Obj }> = [
      {
        name: "a create tracks every field, maps it adds included",
        run: () => trackUpdate(undefined, obj({ spec: { replicas: 1 } }, { labels: { app: "a" } }), { manager: "kubectl-create", now: T0 }),
        manager: "kubectl-create",
        operation: "Update",
        fields: { "f:metadata": { "f:labels": { ".": {}, "f:app": {} } }, "f:spec": { ".": {}, "f:replicas": {} } },
      },
      {
        name: "an apply owns only the leaves it sets",
        run: () => apply(undefined, obj({ spec: { replicas: 1 } }, { labels: { app: "a" } }), ssa("kubectl")),
        manager: "kubectl",
        operation: "Apply",
        fields: { "f:metadata": { "f:labels": { "f:app": {} } }, "f:spec": { "f:replicas": {} } },
      },
      {
        name: "an apply owns an empty map it sets",
        run: () => apply(undefined, obj({ spec: { options: {} } }), ssa("kubectl")),
        manager: "kubectl",
        operation: "Apply",
        fields: { "f:spec": { "f:options": {} } },
      },
      {
        name: "ordinary lists are owned whole",
        run: () => apply(undefined, obj({ spec: { hosts: [{ name: "a" }, { name: "b" }] } }), ssa("kubectl")),
        manager: "kubectl",
        operation: "Apply",
        fields: { "f:spec": { "f:hosts": {} } },
      },
      {
        name: "finalizers are a set and conditions a map keyed by type",
        run: () =>
          trackUpdate(
            undefined,
            obj({ status: { conditions: [{ type: "Ready", status: "True" }] } }, { finalizers: ["a.io/x"] }),
            { manager: "ctrl", now: T0, ignorePaths: [] },
          ),
        manager: "ctrl",
        operation: "Update",
        fields: {
          "f:metadata": { "f:finalizers": { ".": {}, 'v:"a.io/x"': {} } },
          "f:status": {
            ".": {},
            "f:conditions": { ".": {}, 'k:{"type":"Ready"}': { ".": {}, "f:status": {}, "f:type": {} } },
          },
        },
      },
      {
        name: "server-owned metadata, identity and status are never tracked on the main resource",
        run: () =>
          trackUpdate(
            undefined,
            stored({ spec: { a: 1 }, status: { phase: "x" } }, { deletionTimestamp: T1, selfLink: "/x" }),
            { manager: "m", now: T0 },
          ),
        manager: "m",
        operation: "Update",
        fields: { "f:spec": { ".": {}, "f:a": {} } },
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const out = c.run();
        const e = entry(out, c.manager, c.operation);
        assert.deepEqual(e.fieldsV1, c.fields);
        assert.equal(e.fieldsType, "FieldsV1");
        assert.equal(e.apiVersion, API);
      });
    }
  });

  describe("kubectl apply --server-side creates then changes a field", () => {
    it("creates the object owned by kubectl, then updates the value and the time", () => {
      const created = apply(undefined, obj({ spec: { maxUses: 3, note: "n" } }), ssa("kubectl", T1));
      assert.deepEqual(field(created, "spec"), { maxUses: 3, note: "n" });
      assert.deepEqual(managers(created), ["kubectl/Apply"]);
      assert.equal(entry(created, "kubectl").time, T1);
      assert.equal(field(created, "metadata", "name"), "t1");

      const live = { ...created, metadata: { ...(created.metadata as Obj), uid: "u-1", resourceVersion: "1" } };
      const changed = apply(live, obj({ spec: { maxUses: 5, note: "n" } }), ssa("kubectl", T2));
      assert.deepEqual(field(changed, "spec"), { maxUses: 5, note: "n" });
      assert.equal(field(changed, "metadata", "uid"), "u-1");
      assert.deepEqual(managers(changed), ["kubectl/Apply"]);
      assert.equal(entry(changed, "kubectl").time, T2);
      assert.deepEqual(entry(changed, "kubectl").fieldsV1, { "f:spec": { "f:maxUses": {}, "f:note": {} } });
    });

    it("returns the live object unchanged, times included, when the apply changes nothing", () => {
      const live = apply(stored({}), obj({ spec: { x: 1 } }), ssa("kubectl", T1));
      const again = apply(live, obj({ spec: { x: 1 } }), ssa("kubectl", T2));
      assert.deepEqual(again, live);
      assert.equal(entry(again, "kubectl").time, T1);
    });

    it("ignores server-owned metadata sent in the configuration", () => {
      const live = stored({ spec: { x: 1 } });
      const out = apply(live, obj({ spec: { x: 2 } }, { uid: "evil", resourceVersion: "1", generation: 9 }), ssa("kubectl"));
      assert.equal(field(out, "metadata", "uid"), "u-1");
      assert.equal(field(out, "metadata", "resourceVersion"), "7");
      assert.equal(field(out, "metadata", "generation"), 1);
    });
  });

  describe("conflicts between appliers", () => {
    const aOwnsX = () => apply(stored({}), obj({ spec: { x: 1 } }), ssa("A", T1));

    it("rejects B setting a different value, naming A and the field", () => {
      const err = conflictOf(() => apply(aOwnsX(), obj({ spec: { x: 2 } }), ssa("B", T2)));
      assert.deepEqual(err.conflicts, [{ manager: "A", field: ".spec.x", message: 'conflict with "A"' }]);
      assert.equal(err.message, 'Apply failed with 1 conflict: conflict with "A": .spec.x');
      assert.equal(err.code, 409);
      assert.equal(err.reason, "Conflict");
      assert.deepEqual(err.toStatus().details, {
        causes: [{ reason: "FieldManagerConflict", message: 'conflict with "A"', field: ".spec.x" }],
      });
    });

    it("with force gives the field to B and takes it from A", () => {
      const out = apply(aOwnsX(), obj({ spec: { x: 2 } }), ssa("B", T2, true));
      assert.equal(field(out, "spec", "x"), 2);
      assert.deepEqual(managers(out), ["B/Apply"]);
      assert.deepEqual(entry(out, "B").fieldsV1, { "f:spec": { "f:x": {} } });
    });

    it("with force leaves A the fields B does not touch", () => {
      const live = apply(stored({}), obj({ spec: { x: 1, y: 1 } }), ssa("A", T1));
      const out = apply(live, obj({ spec: { x: 2 } }), ssa("B", T2, true));
      assert.deepEqual(entry(out, "A").fieldsV1, { "f:spec": { "f:y": {} } });
      assert.deepEqual(field(out, "spec"), { x: 2, y: 1 });
    });

    it("shares ownership when B applies the same value", () => {
      const out = apply(aOwnsX(), obj({ spec: { x: 1 } }), ssa("B", T2));
      assert.deepEqual(managers(out), ["A/Apply", "B/Apply"]);
      assert.deepEqual(entry(out, "A").fieldsV1, { "f:spec": { "f:x": {} } });
      assert.deepEqual(entry(out, "B").fieldsV1, { "f:spec": { "f:x": {} } });
    });

    it("lists several conflicts grouped by manager", () => {
      let live = apply(stored({}), obj({ spec: { x: 1, y: 1 } }, { labels: { app: "a" } }), ssa("A", T1));
      live = trackUpdate(live, { ...live, spec: { x: 1, y: 1, z: 1 } }, { manager: "kubectl-edit", now: T2 });
      const err = conflictOf(() => apply(live, obj({ spec: { x: 2, y: 2, z: 2 } }, { labels: { app: "b" } }), ssa("B", T3)));
      assert.deepEqual(
        err.conflicts.map((c) => `${c.manager} ${c.field}`),
        ["A .metadata.labels.app", "A .spec.x", "A .spec.y", "kubectl-edit .spec.z"],
      );
      assert.equal(
        err.message,
        [
          'Apply failed with 4 conflicts: conflicts with "A":',
          "- .metadata.labels.app",
          "- .spec.x",
          "- .spec.y",
          `conflicts with "kubectl-edit" using ${API}:`,
          "- .spec.z",
        ].join("\n"),
      );
    });

    it("reports an atomic list as one conflict", () => {
      const live = apply(stored({}), obj({ spec: { hosts: ["a"] } }), ssa("A"));
      const err = conflictOf(() => apply(live, obj({ spec: { hosts: ["b"] } }), ssa("B", T2)));
      assert.deepEqual(err.conflicts.map((c) => c.field), [".spec.hosts"]);
    });
  });

  describe("client-side apply then server-side apply", () => {
    const csaCreated = () => {
      const config = obj({ spec: { maxUses: 3 } });
      const withAnnotation = obj(
        { spec: { maxUses: 3 } },
        { annotations: { [LAST_APPLIED_ANNOTATION]: JSON.stringify(config) }, uid: "u-1" },
      );
      return trackUpdate(undefined, withAnnotation, { manager: "kubectl-client-side-apply", now: T0 });
    };

    it("records the client-side apply as an Update", () => {
      const live = csaCreated();
      assert.deepEqual(entry(live, "kubectl-client-side-apply", "Update").fieldsV1, {
        "f:metadata": { "f:annotations": { ".": {}, [`f:${LAST_APPLIED_ANNOTATION}`]: {} } },
        "f:spec": { ".": {}, "f:maxUses": {} },
      });
    });

    it("conflicts with kubectl-client-side-apply on a different value", () => {
      const err = conflictOf(() => apply(csaCreated(), obj({ spec: { maxUses: 5 } }), ssa("kubectl", T1)));
      assert.equal(
        err.message,
        `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using ${API}: .spec.maxUses`,
      );
      assert.deepEqual(err.conflicts, [
        { manager: "kubectl-client-side-apply", field: ".spec.maxUses", message: `conflict with "kubectl-client-side-apply" using ${API}` },
      ]);
    });

    it("takes over with force and keeps the last-applied annotation in step for kubectl", () => {
      const out = apply(csaCreated(), obj({ spec: { maxUses: 5 } }), ssa("kubectl", T1, true));
      assert.equal(field(out, "spec", "maxUses"), 5);
      assert.deepEqual(entry(out, "kubectl").fieldsV1, { "f:spec": { "f:maxUses": {} } });
      // As in kube, the client-side apply keeps owning the spec map it created, now empty of fields.
      assert.deepEqual(entry(out, "kubectl-client-side-apply", "Update").fieldsV1, {
        "f:metadata": { "f:annotations": { ".": {}, [`f:${LAST_APPLIED_ANNOTATION}`]: {} } },
        "f:spec": {},
      });
      const annotation = field(out, "metadata", "annotations", LAST_APPLIED_ANNOTATION);
      assert.equal(typeof annotation, "string");
      assert.deepEqual(JSON.parse(String(annotation)), obj({ spec: { maxUses: 5 } }));
    });

    it("leaves the annotation alone for other managers", () => {
      const out = apply(csaCreated(), obj({ spec: { maxUses: 5 } }), ssa("flux", T1, true));
      assert.deepEqual(JSON.parse(String(field(out, "metadata", "annotations", LAST_APPLIED_ANNOTATION))), obj({ spec: { maxUses: 3 } }));
    });
  });

  describe("pruning", () => {
    const aAppliesAB = () => apply(stored({}), obj({}, { labels: { a: "1", b: "2" } }), ssa("A", T1));

    const cases: Array<{ name: string; live: () => Obj; labels: Obj | undefined; owners: string[] }> = [
      { name: "removes a label A no longer applies", live: aAppliesAB, labels: { a: "1" }, owners: ["A/Apply"] },
      {
        name: "keeps it when B applied it too",
        live: () => apply(aAppliesAB(), obj({}, { labels: { b: "2" } }), ssa("B", T2)),
        labels: { a: "1", b: "2" },
        owners: ["B/Apply", "A/Apply"],
      },
      {
        name: "keeps it when an updater changed it since (A lost it)",
        live: () => {
          const live = aAppliesAB();
          return trackUpdate(live, { ...live, metadata: { ...(live.metadata as Obj), labels: { a: "1", b: "3" } } }, { manager: "kubectl-label", now: T2 });
        },
        labels: { a: "1", b: "3" },
        owners: ["A/Apply", "kubectl-label/Update"],
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const out = apply(c.live(), obj({}, { labels: { a: "1" } }), ssa("A", T3));
        assert.deepEqual(field(out, "metadata", "labels"), c.labels);
        assert.deepEqual(managers(out), c.owners);
        assert.deepEqual(entry(out, "A").fieldsV1, { "f:metadata": { "f:labels": { "f:a": {} } } });
      });
    }

    it("removes a map emptied by pruning", () => {
      const live = apply(stored({}), obj({ spec: { a: 1, extra: { x: 1 } } }), ssa("A", T1));
      const out = apply(live, obj({ spec: { a: 1 } }), ssa("A", T2));
      assert.deepEqual(field(out, "spec"), { a: 1 });
    });

    it("never prunes fields nobody applied (legacy fields)", () => {
      const legacy = stored({ spec: { a: 1, legacy: true } });
      const first = apply(legacy, obj({ spec: { a: 2 } }), ssa("A", T1));
      assert.deepEqual(field(first, "spec"), { a: 2, legacy: true });
      const second = apply(first, obj({ spec: { b: 1 } }), ssa("A", T2));
      assert.deepEqual(field(second, "spec"), { legacy: true, b: 1 });
    });

    it("drops the manager when its configuration sets nothing", () => {
      const live = apply(stored({}), obj({ spec: { a: 1 } }), ssa("A", T1));
      const out = apply(live, obj({}), ssa("A", T2));
      assert.equal(field(out, "spec"), undefined);
      assert.deepEqual(managers(out), []);
      assert.equal(field(out, "metadata", "managedFields"), undefined);
    });
  });

  describe("status subresource", () => {
    const withSpec = () => apply(stored({}), obj({ spec: { x: 1 } }, { labels: { app: "a" } }), ssa("kubectl", T1));

    it("applies status only, in an entry marked status", () => {
      const out = apply(
        withSpec(),
        obj({ spec: { x: 99 }, status: { phase: "Ready" } }, { labels: { app: "other" } }),
        { manager: "ctrl", force: false, now: T2, subresource: "status" },
      );
      assert.deepEqual(field(out, "spec"), { x: 1 });
      assert.deepEqual(field(out, "metadata", "labels"), { app: "a" });
      assert.deepEqual(field(out, "status"), { phase: "Ready" });
      const e = entry(out, "ctrl", "Apply", "status");
      assert.deepEqual(e.fieldsV1, { "f:status": { "f:phase": {} } });
      assert.deepEqual(entry(out, "kubectl").fieldsV1, {
        "f:metadata": { "f:labels": { "f:app": {} } },
        "f:spec": { "f:x": {} },
      });
    });

    it("the main resource ignores status in an applied configuration", () => {
      const live = apply(withSpec(), obj({ status: { phase: "Ready" } }), { manager: "ctrl", force: false, now: T2, subresource: "status" });
      const out = apply(live, obj({ spec: { x: 1 }, status: { phase: "Gone" } }, { labels: { app: "a" } }), ssa("kubectl", T3));
      assert.deepEqual(field(out, "status"), { phase: "Ready" });
    });

    it("conflicts between status managers but not with spec managers", () => {
      const live = apply(withSpec(), obj({ status: { phase: "Ready" } }), { manager: "ctrl", force: false, now: T2, subresource: "status" });
      const err = conflictOf(() => apply(live, obj({ status: { phase: "Failed" } }), { manager: "other", force: false, now: T3, subresource: "status" }));
      assert.deepEqual(err.conflicts, [{ manager: "ctrl", field: ".status.phase", message: 'conflict with "ctrl"' }]);
    });

    it("tracks status updates in an Update entry marked status, ignoring other changes", () => {
      const live = withSpec();
      const next = { ...live, spec: { x: 5 }, status: { phase: "Ready" } };
      const out = trackUpdate(live, next, { manager: "ctrl", now: T2, subresource: "status" });
      assert.deepEqual(entry(out, "ctrl", "Update", "status").fieldsV1, { "f:status": { ".": {}, "f:phase": {} } });
      assert.deepEqual(entry(out, "kubectl").fieldsV1, {
        "f:metadata": { "f:labels": { "f:app": {} } },
        "f:spec": { "f:x": {} },
      });
    });
  });

  describe("associative lists", () => {
    it("merges finalizers as a set and owns each value", () => {
      const live = apply(stored({}), obj({}, { finalizers: ["a.io/one"] }), ssa("A", T1));
      const out = apply(live, obj({}, { finalizers: ["b.io/two"] }), ssa("B", T2));
      assert.deepEqual(field(out, "metadata", "finalizers"), ["a.io/one", "b.io/two"]);
      assert.deepEqual(entry(out, "B").fieldsV1, { "f:metadata": { "f:finalizers": { 'v:"b.io/two"': {} } } });
    });

    it("prunes only the finalizer the manager dropped", () => {
      let live = apply(stored({}), obj({}, { finalizers: ["a.io/one", "a.io/two"] }), ssa("A", T1));
      live = apply(live, obj({}, { finalizers: ["b.io/x"] }), ssa("B", T2));
      const out = apply(live, obj({}, { finalizers: ["a.io/one"] }), ssa("A", T3));
      assert.deepEqual(field(out, "metadata", "finalizers"), ["a.io/one", "b.io/x"]);
    });

    it("merges conditions by type and lets two controllers own different conditions", () => {
      const status = (manager: string) => ({ manager, force: false, now: T2, subresource: "status" as const });
      let live = apply(stored({}), obj({ status: { conditions: [{ type: "Ready", status: "False" }] } }), status("a"));
      live = apply(live, obj({ status: { conditions: [{ type: "Synced", status: "True" }] } }), status("b"));
      assert.deepEqual(field(live, "status", "conditions"), [
        { type: "Ready", status: "False" },
        { type: "Synced", status: "True" },
      ]);
      assert.deepEqual(entry(live, "b", "Apply", "status").fieldsV1, {
        "f:status": { "f:conditions": { 'k:{"type":"Synced"}': { ".": {}, "f:status": {}, "f:type": {} } } },
      });
      const err = conflictOf(() => apply(live, obj({ status: { conditions: [{ type: "Ready", status: "True" }] } }), status("b")));
      assert.deepEqual(err.conflicts.map((c) => c.field), ['.status.conditions[type="Ready"].status']);
      const updated = apply(live, obj({ status: { conditions: [{ type: "Ready", status: "True" }] } }), status("a"));
      assert.deepEqual(field(updated, "status", "conditions"), [
        { type: "Ready", status: "True" },
        { type: "Synced", status: "True" },
      ]);
    });

    it("keys owner references by uid", () => {
      const ref = (uid: string) => ({ apiVersion: "v1", kind: "Owner", name: uid, uid });
      const live = apply(stored({}), obj({}, { ownerReferences: [ref("u-a")] }), ssa("A", T1));
      const out = apply(live, obj({}, { ownerReferences: [ref("u-b")] }), ssa("B", T2));
      assert.deepEqual(field(out, "metadata", "ownerReferences"), [ref("u-a"), ref("u-b")]);
      assert.deepEqual(entry(out, "B").fieldsV1, {
        "f:metadata": {
          "f:ownerReferences": {
            'k:{"uid":"u-b"}': { ".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {} },
          },
        },
      });
    });

    it("treats a conditions list without types as atomic", () => {
      const out = apply(stored({}), obj({ status: { conditions: [{ status: "x" }] } }), { ...ssa("a"), subresource: "status" });
      assert.deepEqual(entry(out, "a", "Apply", "status").fieldsV1, { "f:status": { "f:conditions": {} } });
    });
  });

  describe("trackUpdate", () => {
    const created = () => trackUpdate(undefined, stored({ spec: { a: 1, b: 1 } }, { labels: { app: "x" } }), { manager: "kubectl-create", now: T0 });

    it("moves changed fields to the writer and keeps the rest", () => {
      const live = created();
      const out = trackUpdate(live, { ...live, spec: { a: 2, b: 1, c: 1 } }, { manager: "kubectl-edit", now: T1 });
      assert.deepEqual(managers(out), ["kubectl-create/Update", "kubectl-edit/Update"]);
      assert.deepEqual(entry(out, "kubectl-edit", "Update").fieldsV1, { "f:spec": { "f:a": {}, "f:c": {} } });
      assert.deepEqual(entry(out, "kubectl-create", "Update").fieldsV1, {
        "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
        "f:spec": { ".": {}, "f:b": {} },
      });
      assert.equal(entry(out, "kubectl-edit", "Update").time, T1);
      assert.equal(entry(out, "kubectl-create", "Update").time, T0);
    });

    it("removes deleted fields from every manager and drops managers left empty", () => {
      const live = apply(created(), obj({ spec: { a: 1, z: 1 } }), ssa("A", T1));
      const out = trackUpdate(live, { ...live, spec: { b: 1 } }, { manager: "kubectl-edit", now: T2 });
      assert.deepEqual(managers(out), ["kubectl-create/Update"]);
      assert.deepEqual(entry(out, "kubectl-create", "Update").fieldsV1, {
        "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
        "f:spec": { ".": {}, "f:b": {} },
      });
    });

    it("leaves entries and times alone when nothing changed", () => {
      const live = created();
      const out = trackUpdate(live, structuredClone(live), { manager: "kubectl-edit", now: T1 });
      assert.deepEqual(out, live);
    });

    it("keeps the live managedFields when the request omits them", () => {
      const live = created();
      const next = structuredClone(live);
      delete (next.metadata as Obj).managedFields;
      next.spec = { a: 1, b: 2 };
      const out = trackUpdate(live, next, { manager: "m", now: T1 });
      assert.deepEqual(managers(out), ["kubectl-create/Update", "m/Update"]);
    });

    it("clears managedFields when the request sends an empty list, and stops tracking", () => {
      const live = created();
      const out = trackUpdate(live, { ...live, metadata: { ...(live.metadata as Obj), managedFields: [] }, spec: { a: 9 } }, { manager: "m", now: T1 });
      assert.equal(field(out, "metadata", "managedFields"), undefined);
      assert.deepEqual(field(out, "spec"), { a: 9 });
    });

    it("does not start tracking a legacy object on update, but apply does without conflicts", () => {
      const legacy = stored({ spec: { a: 1 } });
      const updated = trackUpdate(legacy, { ...legacy, spec: { a: 2 } }, { manager: "m", now: T1 });
      assert.equal(field(updated, "metadata", "managedFields"), undefined);
      const applied = apply(updated, obj({ spec: { a: 3 } }), ssa("kubectl", T2));
      assert.equal(field(applied, "spec", "a"), 3);
      assert.deepEqual(managers(applied), ["kubectl/Apply"]);
    });

    it("merges the oldest of more than ten updaters into ancient-changes", () => {
      let live = created();
      for (let i = 1; i <= 11; i++) {
        const now = `2024-01-01T01:${String(i).padStart(2, "0")}:00Z`;
        live = trackUpdate(live, { ...live, spec: { ...(live.spec as Obj), [`f${i}`]: i } }, { manager: `m${i}`, now });
      }
      const names = managers(live);
      assert.equal(names.length, 10);
      assert.ok(names.includes("ancient-changes/Update"));
      assert.ok(!names.includes("kubectl-create/Update"));
      // Creating the bucket does not lower the count, so three entries go into it.
      assert.ok(!names.includes("m1/Update"));
      assert.ok(!names.includes("m2/Update"));
      assert.ok(names.includes("m3/Update"));
      const bucket = entry(live, "ancient-changes", "Update");
      assert.equal(bucket.time, "2024-01-01T01:02:00Z");
      assert.deepEqual(bucket.fieldsV1, {
        "f:metadata": { "f:labels": { ".": {}, "f:app": {} } },
        "f:spec": { ".": {}, "f:a": {}, "f:b": {}, "f:f1": {}, "f:f2": {} },
      });
    });
  });

  describe("entries", () => {
    it("are one per manager, operation and subresource, sorted as kube sorts them", () => {
      let live = trackUpdate(undefined, stored({ spec: { a: 1 } }), { manager: "z-create", now: T0 });
      live = apply(live, obj({ spec: { b: 1 } }), ssa("kubectl", T2));
      live = apply(live, obj({ spec: { c: 1 } }), ssa("flux", T1));
      live = apply(live, obj({ status: { s: 1 } }), { ...ssa("kubectl", T1), subresource: "status" });
      live = apply(live, obj({ spec: { b: 2 } }), ssa("kubectl", T2));
      assert.deepEqual(managers(live), ["flux/Apply", "kubectl/Apply/status", "kubectl/Apply", "z-create/Update"]);
    });
  });

  describe("edge cases", () => {
    it("removes a field the configuration sets to null, and the applier owns it", () => {
      const live = trackUpdate(undefined, stored({ spec: { a: 1, b: 1 } }), { manager: "kubectl-create", now: T0 });
      const out = apply(live, obj({ spec: { a: null } }), ssa("kubectl", T1));
      assert.deepEqual(field(out, "spec"), { b: 1 });
      assert.deepEqual(entry(out, "kubectl").fieldsV1, { "f:spec": { "f:a": {} } });
      assert.deepEqual(entry(out, "kubectl-create", "Update").fieldsV1, { "f:spec": { ".": {}, "f:b": {} } });
    });

    it("treats a field that changes shape as modified and drops what was below it", () => {
      const live = trackUpdate(undefined, stored({ spec: { a: { x: 1 } } }), { manager: "m1", now: T0 });
      const out = trackUpdate(live, { ...live, spec: { a: "flat" } }, { manager: "m2", now: T1 });
      assert.deepEqual(managers(out), ["m1/Update", "m2/Update"]);
      assert.deepEqual(entry(out, "m1", "Update").fieldsV1, { "f:spec": {} });
      assert.deepEqual(entry(out, "m2", "Update").fieldsV1, { "f:spec": { "f:a": {} } });
    });

    it("conflicts with the same manager's Update entry, as kube keys entries by operation", () => {
      const live = trackUpdate(undefined, stored({ spec: { a: 1 } }), { manager: "kubectl", now: T0 });
      const err = conflictOf(() => apply(live, obj({ spec: { a: 2 } }), ssa("kubectl", T1)));
      assert.equal(err.message, `Apply failed with 1 conflict: conflict with "kubectl" using ${API}: .spec.a`);
    });

    it("honours caller-given ignore paths", () => {
      const out = apply(undefined, obj({ spec: { a: 1, secret: "s" }, status: { phase: "x" } }), {
        ...ssa("kubectl"),
        ignorePaths: [["spec", "secret"]],
      });
      assert.deepEqual(field(out, "spec"), { a: 1 });
      assert.deepEqual(field(out, "status"), { phase: "x" });
      assert.deepEqual(entry(out, "kubectl").fieldsV1, { "f:spec": { "f:a": {} }, "f:status": { "f:phase": {} } });
    });

    it("records times as kube does, in whole UTC seconds", () => {
      const out = apply(undefined, obj({ spec: { a: 1 } }), ssa("kubectl", "2024-01-01T00:00:05.678Z"));
      assert.equal(entry(out, "kubectl").time, "2024-01-01T00:00:05Z");
    });

    it("starts from the managedFields an update sends", () => {
      const live = trackUpdate(undefined, stored({ spec: { a: 1, b: 1 } }), { manager: "kubectl-create", now: T0 });
      const sent: ManagedFieldsEntry = {
        manager: "importer",
        operation: "Update",
        apiVersion: API,
        time: T0,
        fieldsType: "FieldsV1",
        fieldsV1: { "f:spec": { "f:a": {}, "f:b": {} } },
      };
      const next = { ...live, metadata: { ...(live.metadata as Obj), managedFields: [sent] }, spec: { a: 1, b: 2 } };
      const out = trackUpdate(live, next, { manager: "m", now: T1 });
      assert.deepEqual(managers(out), ["importer/Update", "m/Update"]);
      assert.deepEqual(entry(out, "importer", "Update").fieldsV1, { "f:spec": { "f:a": {} } });
    });
  });

  describe("validation and purity", () => {
    it("refuses a configuration carrying managedFields", () => {
      assert.throws(
        () => apply(undefined, obj({}, { managedFields: [{ manager: "x" }] }), ssa("kubectl")),
        (err: unknown) => err instanceof ApplyInvalidError && err.message === "metadata.managedFields must be nil" && err.code === 400,
      );
    });

    it("never modifies its inputs", () => {
      const live = apply(stored({}), obj({ spec: { x: 1, list: [1] } }, { labels: { a: "1", b: "2" } }), ssa("A", T1));
      const config = obj({ spec: { x: 2 } }, { labels: { a: "1" } });
      const liveBefore = structuredClone(live);
      const configBefore = structuredClone(config);
      const out = apply(live, config, ssa("A", T2));
      assert.deepEqual(live, liveBefore);
      assert.deepEqual(config, configBefore);
      const next = structuredClone(out);
      next.spec = { y: 1 };
      const nextBefore = structuredClone(next);
      trackUpdate(out, next, { manager: "m", now: T3 });
      assert.deepEqual(next, nextBefore);
    });
  });
});
