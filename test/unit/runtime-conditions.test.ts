import assert from "node:assert/strict";
import {
  conditionStatusOf,
  getCondition,
  isFalse,
  isTrue,
  jsonEqual,
  mergePatch,
  removeCondition,
  setCondition,
  statusChanged,
  type Condition,
} from "../../controllers/runtime/conditions.js";
import { deepFreeze } from "../../controllers/runtime/object.js";

const t0 = new Date("2025-01-01T00:00:00.123Z");
const t1 = new Date("2025-01-01T01:00:00Z");

function ready(status: Condition["status"], reason = "Reconciled", message = "", observedGeneration = 1) {
  return { type: "Ready", status, reason, message, observedGeneration };
}

describe("runtime conditions", () => {
  it("conditionStatusOf reads one condition's status from an object, undefined when it has none", () => {
    const node = { status: { conditions: [{ type: "Scheduled", status: "False" }, { type: "Ready", status: "Unknown" }] } };
    assert.equal(conditionStatusOf(node, "Ready"), "Unknown");
    assert.equal(conditionStatusOf(node, "Scheduled"), "False");
    assert.equal(conditionStatusOf(node, "Missing"), undefined);
    assert.equal(conditionStatusOf({}, "Ready"), undefined);
    assert.equal(conditionStatusOf({ status: {} }, "Ready"), undefined);
  });

  describe("setCondition", () => {
    it("adds a new condition with lastTransitionTime now, at second precision", () => {
      const out = setCondition(undefined, ready("True"), t0);
      assert.deepEqual(out, [
        { type: "Ready", status: "True", reason: "Reconciled", message: "", observedGeneration: 1, lastTransitionTime: "2025-01-01T00:00:00Z" },
      ]);
    });

    it("keeps lastTransitionTime when only reason, message or generation change", () => {
      const first = setCondition(undefined, ready("False", "Pending", "waiting", 1), t0);
      const second = setCondition(first, ready("False", "Blocked", "other", 2), t1);
      assert.equal(second[0]?.lastTransitionTime, "2025-01-01T00:00:00Z");
      assert.equal(second[0]?.reason, "Blocked");
      assert.equal(second[0]?.message, "other");
      assert.equal(second[0]?.observedGeneration, 2);
    });

    it("moves lastTransitionTime when the status flips", () => {
      const first = setCondition(undefined, ready("False"), t0);
      const second = setCondition(first, ready("True"), t1);
      assert.equal(second[0]?.lastTransitionTime, "2025-01-01T01:00:00Z");
    });

    it("keeps the order of existing conditions and appends new ones", () => {
      let c = setCondition(undefined, { type: "A", status: "True", reason: "R", message: "" }, t0);
      c = setCondition(c, { type: "B", status: "True", reason: "R", message: "" }, t0);
      c = setCondition(c, { type: "A", status: "False", reason: "R", message: "" }, t1);
      assert.deepEqual(c.map((x) => x.type), ["A", "B"]);
    });

    it("never modifies its input, so frozen cached conditions are safe", () => {
      const cached = deepFreeze(setCondition(undefined, ready("False"), t0));
      const out = setCondition(cached, ready("True"), t1);
      assert.equal(cached[0]?.status, "False");
      assert.equal(out[0]?.status, "True");
      assert.ok(!Object.isFrozen(out[0]));
    });

    it("is idempotent: setting the same condition twice gives equal lists", () => {
      const a = setCondition(undefined, ready("True"), t0);
      const b = setCondition(a, ready("True"), t1);
      assert.equal(statusChanged({ conditions: a }, { conditions: b }), false);
    });
  });

  describe("getCondition, isTrue, isFalse and removeCondition", () => {
    const list = setCondition(setCondition(undefined, ready("True"), t0), { type: "Degraded", status: "False", reason: "Healthy", message: "" }, t0);

    it("finds conditions by type", () => {
      assert.equal(getCondition(list, "Ready")?.status, "True");
      assert.equal(getCondition(list, "Missing"), undefined);
      assert.equal(getCondition(undefined, "Ready"), undefined);
    });

    it("reports True and False, and neither for an absent or Unknown condition", () => {
      assert.equal(isTrue(list, "Ready"), true);
      assert.equal(isFalse(list, "Degraded"), true);
      assert.equal(isTrue(list, "Missing"), false);
      assert.equal(isFalse(list, "Missing"), false);
      const unknown = setCondition(undefined, ready("Unknown"), t0);
      assert.equal(isTrue(unknown, "Ready"), false);
      assert.equal(isFalse(unknown, "Ready"), false);
    });

    it("removes a condition by type", () => {
      assert.deepEqual(removeCondition(list, "Ready").map((c) => c.type), ["Degraded"]);
    });
  });

  describe("statusChanged", () => {
    const cases: Array<{ name: string; a: unknown; b: unknown; changed: boolean }> = [
      { name: "identical objects", a: { x: 1, y: [1, 2] }, b: { x: 1, y: [1, 2] }, changed: false },
      { name: "different key order", a: { x: 1, y: { p: 1, q: 2 } }, b: { y: { q: 2, p: 1 }, x: 1 }, changed: false },
      { name: "an undefined key versus an absent key", a: { x: 1, y: undefined }, b: { x: 1 }, changed: false },
      { name: "undefined versus an empty status", a: undefined, b: {}, changed: false },
      { name: "a changed nested value", a: { c: [{ s: "True" }] }, b: { c: [{ s: "False" }] }, changed: true },
      { name: "reordered array elements", a: { y: [1, 2] }, b: { y: [2, 1] }, changed: true },
      { name: "an added key", a: { x: 1 }, b: { x: 1, z: 0 }, changed: true },
      { name: "null versus absent", a: { x: null }, b: {}, changed: true },
      { name: "a number versus its string", a: { x: 1 }, b: { x: "1" }, changed: true },
    ];
    for (const c of cases) {
      it(`${c.changed ? "detects" : "ignores"} ${c.name}`, () => {
        assert.equal(statusChanged(c.a, c.b), c.changed);
        if (c.a !== undefined) assert.equal(jsonEqual(c.b, c.a), !c.changed, "jsonEqual is symmetric");
      });
    }
  });

  describe("mergePatch", () => {
    it("is undefined for equal documents", () => {
      assert.equal(mergePatch({ a: 1 }, { a: 1 }), undefined);
    });

    it("sets changed keys, nulls removed keys, recurses into objects and replaces arrays", () => {
      assert.deepEqual(
        mergePatch(
          { keep: 1, drop: "x", nested: { a: 1, b: 2 }, list: [1, 2] },
          { keep: 1, nested: { a: 1, b: 3 }, list: [1], added: true },
        ),
        { drop: null, nested: { b: 3 }, list: [1], added: true },
      );
    });
  });
});
