import assert from "node:assert/strict";
import { JsonPathError, evalJsonPath, formatJsonPathValue } from "../../apiserver/jsonpath.js";

const obj = {
  metadata: { name: "w1", labels: { "app.kubernetes.io/name": "web" }, creationTimestamp: "2024-01-01T00:00:00Z" },
  spec: {
    size: 3,
    ports: [
      { name: "http", port: 80 },
      { name: "https", port: 443 },
    ],
  },
  status: {
    conditions: [
      { type: "Ready", status: "True", reason: "Up" },
      { type: "Degraded", status: "False" },
    ],
  },
};

describe("jsonpath", () => {
  const cases: Array<{ path: string; want: unknown[] }> = [
    { path: ".metadata.name", want: ["w1"] },
    { path: "{.metadata.name}", want: ["w1"] },
    { path: "{ .metadata.name }", want: ["w1"] },
    { path: "$.metadata.name", want: ["w1"] },
    { path: "{$.spec.size}", want: [3] },
    { path: ".spec.ports[0].port", want: [80] },
    { path: ".spec.ports[-1].name", want: ["https"] },
    { path: ".spec.ports[*].port", want: [80, 443] },
    { path: ".spec.ports[0:1].name", want: ["http"] },
    { path: ".spec.ports[5].port", want: [] },
    { path: ".status.conditions[?(@.type==\"Ready\")].status", want: ["True"] },
    { path: ".status.conditions[?(@.type=='Degraded')].status", want: ["False"] },
    { path: ".status.conditions[?(@.type!=\"Ready\")].type", want: ["Degraded"] },
    { path: ".status.conditions[?(@.reason)].type", want: ["Ready"] },
    { path: ".spec.ports[?(@.port>100)].name", want: ["https"] },
    { path: ".metadata.labels['app.kubernetes.io/name']", want: ["web"] },
    { path: ".metadata.labels.missing", want: [] },
    { path: ".nothing.here", want: [] },
    { path: "..port", want: [80, 443] },
    { path: ".spec.ports[*]", want: obj.spec.ports },
    { path: ".metadata.name.deeper", want: [] },
  ];
  for (const c of cases) {
    it(`evaluates ${c.path}`, () => {
      assert.deepEqual(evalJsonPath(c.path, obj), c.want);
    });
  }

  for (const bad of [".a[", ".a[?(@.b==)]", ".a[x]", ".a]", "{.a"]) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => evalJsonPath(bad, obj), JsonPathError);
    });
  }

  it("formats values as kubectl prints them", () => {
    assert.equal(formatJsonPathValue("x"), "x");
    assert.equal(formatJsonPathValue(3), "3");
    assert.equal(formatJsonPathValue(true), "true");
    assert.equal(formatJsonPathValue(null), "");
    assert.equal(formatJsonPathValue({ b: 1, a: [1, "x"] }), '{"a":[1,"x"],"b":1}');
  });
});
