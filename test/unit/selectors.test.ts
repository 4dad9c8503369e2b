import assert from "node:assert/strict";
import {
  SelectorError,
  equalityLabelRequirements,
  fieldSelectorPaths,
  labelSelectorFromMetav1,
  labelSelectorToString,
  matchesFields,
  matchesLabels,
  parseFieldSelector,
  parseLabelSelector,
} from "../../lib/kube/selectors.js";

describe("label selectors", () => {
  const cases: Array<{ selector: string; labels: Record<string, string> | undefined; matches: boolean }> = [
    { selector: "", labels: undefined, matches: true },
    { selector: "  ", labels: { a: "b" }, matches: true },
    { selector: "a=b", labels: { a: "b" }, matches: true },
    { selector: "a==b", labels: { a: "b" }, matches: true },
    { selector: "a=b", labels: { a: "c" }, matches: false },
    { selector: "a=b", labels: undefined, matches: false },
    { selector: "a!=b", labels: { a: "c" }, matches: true },
    { selector: "a!=b", labels: {}, matches: true },
    { selector: "a!=b", labels: { a: "b" }, matches: false },
    { selector: "a in (x, y)", labels: { a: "y" }, matches: true },
    { selector: "a in (x,y)", labels: { a: "z" }, matches: false },
    { selector: "a in (x)", labels: {}, matches: false },
    { selector: "a notin (x)", labels: {}, matches: true },
    { selector: "a notin (x)", labels: { a: "x" }, matches: false },
    { selector: "a", labels: { a: "" }, matches: true },
    { selector: "a", labels: { b: "" }, matches: false },
    { selector: "!a", labels: { b: "" }, matches: true },
    { selector: "!a", labels: { a: "x" }, matches: false },
    { selector: "a=", labels: { a: "" }, matches: true },
    { selector: "a=b,c", labels: { a: "b", c: "1" }, matches: true },
    { selector: "a=b, !c", labels: { a: "b", c: "1" }, matches: false },
    { selector: "example.com/role=db,tier in (a,b)", labels: { "example.com/role": "db", tier: "b" }, matches: true },
    { selector: "n>3", labels: { n: "10" }, matches: true },
    { selector: "n<3", labels: { n: "10" }, matches: false },
    { selector: "x=in", labels: { x: "in" }, matches: true },
  ];
  for (const c of cases) {
    it(`"${c.selector}" ${c.matches ? "matches" : "does not match"} ${JSON.stringify(c.labels)}`, () => {
      assert.equal(matchesLabels(parseLabelSelector(c.selector), c.labels), c.matches);
    });
  }

  const bad = ["a=b=c", "a in x", "a in (x", "!a=b", "a b", "=b", "a,", ",a", "a in ()x", "-bad=x", "a=-x", "a notin", "n>x"];
  for (const s of bad) {
    it(`rejects "${s}" with a SelectorError`, () => {
      assert.throws(() => parseLabelSelector(s), SelectorError);
    });
  }

  it("explains what it expected", () => {
    assert.throws(() => parseLabelSelector("a b"), /found 'b', expected: '=', '!=', '=='/);
  });

  it("rejects label keys with an empty prefix or a long name", () => {
    assert.throws(() => parseLabelSelector("/a=b"), /prefix part/);
    assert.throws(() => parseLabelSelector(`${"a".repeat(64)}=b`), /63 characters/);
  });

  it("treats an empty set as holding the empty value, as kube does", () => {
    const sel = parseLabelSelector("a in ()");
    assert.deepEqual(sel.requirements[0]?.values, [""]);
  });

  it("renders back to the string syntax", () => {
    assert.equal(labelSelectorToString(parseLabelSelector("a==b,c notin (x,y),!d,e")), "a=b,c notin (x,y),!d,e");
  });

  it("lists only the equality requirements for the jsonb pre-filter", () => {
    const sel = parseLabelSelector("a=b,c!=d,e in (f),g==h,a=z");
    assert.deepEqual(equalityLabelRequirements(sel), { a: "b", g: "h" });
  });
});

describe("metav1 label selectors", () => {
  it("matches nothing when the selector is null", () => {
    assert.equal(matchesLabels(labelSelectorFromMetav1(null), {}), false);
    assert.equal(matchesLabels(labelSelectorFromMetav1(undefined), { a: "b" }), false);
  });

  it("matches everything when the selector is empty", () => {
    assert.equal(matchesLabels(labelSelectorFromMetav1({}), { a: "b" }), true);
  });

  it("combines matchLabels and matchExpressions", () => {
    const sel = labelSelectorFromMetav1({
      matchLabels: { app: "web" },
      matchExpressions: [
        { key: "tier", operator: "In", values: ["a", "b"] },
        { key: "env", operator: "NotIn", values: ["prod"] },
        { key: "owner", operator: "Exists" },
        { key: "legacy", operator: "DoesNotExist" },
      ],
    });
    assert.equal(matchesLabels(sel, { app: "web", tier: "a", owner: "x" }), true);
    assert.equal(matchesLabels(sel, { app: "web", tier: "a", owner: "x", env: "prod" }), false);
    assert.equal(matchesLabels(sel, { app: "web", tier: "a", owner: "x", legacy: "1" }), false);
    assert.equal(matchesLabels(sel, { app: "web", tier: "a" }), false);
  });

  it("rejects unknown operators and In without values", () => {
    assert.throws(() => labelSelectorFromMetav1({ matchExpressions: [{ key: "a", operator: "Gt", values: ["1"] }] }), SelectorError);
    assert.throws(() => labelSelectorFromMetav1({ matchExpressions: [{ key: "a", operator: "In", values: [] }] }), SelectorError);
    assert.throws(() => labelSelectorFromMetav1({ matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] }), SelectorError);
  });
});

describe("field selectors", () => {
  const obj = {
    metadata: { name: "w1", namespace: "default" },
    spec: { nodeName: "n1", replicas: 3, paused: false },
    type: "Opaque",
  };
  const cases: Array<{ selector: string; matches: boolean }> = [
    { selector: "", matches: true },
    { selector: "metadata.name=w1", matches: true },
    { selector: "metadata.name==w1", matches: true },
    { selector: "metadata.name!=w1", matches: false },
    { selector: "metadata.name=w1,metadata.namespace=default", matches: true },
    { selector: "metadata.name=w1,metadata.namespace=other", matches: false },
    { selector: "spec.nodeName=n1", matches: true },
    { selector: "spec.replicas=3", matches: true },
    { selector: "spec.paused=false", matches: true },
    { selector: "type=Opaque", matches: true },
    { selector: "spec.missing=", matches: true },
    { selector: "spec.missing!=", matches: false },
    { selector: "metadata=x", matches: false },
  ];
  for (const c of cases) {
    it(`"${c.selector}" ${c.matches ? "matches" : "does not match"}`, () => {
      assert.equal(matchesFields(parseFieldSelector(c.selector), obj), c.matches);
    });
  }

  it("unescapes commas and equals signs in values", () => {
    const sel = parseFieldSelector("metadata.name=a\\,b\\=c");
    assert.deepEqual(sel.requirements, [{ field: "metadata.name", operator: "=", value: "a,b=c" }]);
  });

  it("rejects terms without an operator", () => {
    assert.throws(() => parseFieldSelector("metadata.name"), /can't understand 'metadata.name'/);
    assert.throws(() => parseFieldSelector("a=b,c"), SelectorError);
    assert.throws(() => parseFieldSelector("a=b\\x"), SelectorError);
  });

  it("lists the distinct paths for the server's supported-field check", () => {
    assert.deepEqual(fieldSelectorPaths(parseFieldSelector("metadata.name=a,spec.x!=b,metadata.name!=c")), [
      "metadata.name",
      "spec.x",
    ]);
  });
});
