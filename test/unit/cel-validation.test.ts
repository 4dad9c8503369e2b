/**
 * CEL validation rules (x-kubernetes-validations) as the embedded API server
 * evaluates them (apiserver/cel-validation.ts): where a rule applies, when a
 * transition rule is evaluated, and how a failure reads.
 */
import assert from "node:assert/strict";
import { validationRuleCauses } from "../../apiserver/cel-validation.js";
import type { KubeObject } from "../../apiserver/object.js";
import type { ResourceDef } from "../../apiserver/registry.js";

const def = (spec: Record<string, unknown>): ResourceDef => ({
  group: "example.io",
  version: "v1",
  kind: "Thing",
  listKind: "ThingList",
  plural: "things",
  singular: "thing",
  namespaced: false,
  shortNames: [],
  categories: [],
  statusSubresource: true,
  tracksGeneration: true,
  printerColumns: [],
  schema: { type: "object", properties: { metadata: { type: "object" }, spec } },
});
const obj = (spec: Record<string, unknown>): KubeObject => ({ apiVersion: "example.io/v1", kind: "Thing", metadata: { name: "t" }, spec }) as KubeObject;

const final = def({
  type: "object",
  "x-kubernetes-validations": [{ rule: "!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)", message: "decision is final", fieldPath: ".decision", reason: "FieldValueForbidden" }],
  properties: { decision: { type: "string" }, note: { type: "string" } },
});

describe("CEL validation rules", () => {
  const cases: Array<{ name: string; def: ResourceDef; obj: KubeObject; old?: KubeObject; want: Array<{ field: string; reason: string; message: string }> }> = [
    { name: "a transition rule is not evaluated on create", def: final, obj: obj({ decision: "Denied" }), want: [] },
    { name: "a transition rule passes when the value is unchanged", def: final, obj: obj({ decision: "Approved", note: "x" }), old: obj({ decision: "Approved" }), want: [] },
    { name: "a transition rule passes when the old object had no decision", def: final, obj: obj({ decision: "Approved" }), old: obj({}), want: [] },
    {
      name: "a transition rule fails on a changed decision, at its fieldPath with its reason",
      def: final,
      obj: obj({ decision: "Denied" }),
      old: obj({ decision: "Approved" }),
      want: [{ field: "spec.decision", reason: "FieldValueForbidden", message: "Forbidden: decision is final" }],
    },
    {
      name: "a transition rule fails on a cleared decision",
      def: final,
      obj: obj({}),
      old: obj({ decision: "Approved" }),
      want: [{ field: "spec.decision", reason: "FieldValueForbidden", message: "Forbidden: decision is final" }],
    },
    {
      name: "a plain rule without a message fails with the default message, typed like kube's Invalid",
      def: def({ type: "object", properties: { replicas: { type: "integer", "x-kubernetes-validations": [{ rule: "self <= 5" }] } } }),
      obj: obj({ replicas: 7 }),
      want: [{ field: "spec.replicas", reason: "FieldValueInvalid", message: 'Invalid value: "integer": failed rule: self <= 5' }],
    },
    {
      name: "integers are CEL ints (compared with int literals)",
      def: def({ type: "object", properties: { replicas: { type: "integer", "x-kubernetes-validations": [{ rule: "self <= 5" }] } } }),
      obj: obj({ replicas: 5 }),
      want: [],
    },
    {
      name: "a rule on list items applies to each item, with its index in the path",
      def: def({ type: "object", properties: { ports: { type: "array", items: { type: "integer", "x-kubernetes-validations": [{ rule: "self > 0", message: "must be positive" }] } } } }),
      obj: obj({ ports: [1, 0, 3] }),
      want: [{ field: "spec.ports[1]", reason: "FieldValueInvalid", message: 'Invalid value: "integer": must be positive' }],
    },
    {
      name: "a transition rule on map-list items correlates old items by key",
      def: def({
        type: "object",
        properties: {
          items: {
            type: "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            items: { type: "object", "x-kubernetes-validations": [{ rule: "self.size == oldSelf.size", message: "size is immutable" }], properties: { name: { type: "string" }, size: { type: "integer" } } },
          },
        },
      }),
      obj: obj({ items: [{ name: "b", size: 2 }, { name: "a", size: 9 }, { name: "new", size: 1 }] }),
      old: obj({ items: [{ name: "a", size: 1 }, { name: "b", size: 2 }] }),
      want: [{ field: "spec.items[1]", reason: "FieldValueInvalid", message: 'Invalid value: "object": size is immutable' }],
    },
    {
      name: "an evaluation error is a cause, never an exception",
      def: def({ type: "object", "x-kubernetes-validations": [{ rule: "self.missing == 1" }], properties: { a: { type: "string" } } }),
      obj: obj({ a: "x" }),
      want: [{ field: "spec", reason: "FieldValueInvalid", message: "" }],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = validationRuleCauses(c.def, c.obj, c.old);
      assert.deepEqual(
        got.map((g) => ({ field: g.field, reason: g.reason, message: c.want.some((w) => w.message === "") ? "" : g.message })),
        c.want,
      );
      if (c.want.some((w) => w.message === "")) assert.match(got[0]?.message ?? "", /^Invalid value: "object": rule evaluation error: /);
    });
  }

  it("a rule that does not compile throws when its kind is first written", () => {
    assert.throws(() => validationRuleCauses(def({ type: "object", "x-kubernetes-validations": [{ rule: "self ==" }] }), obj({})), /compiling validation rule/);
  });
});
