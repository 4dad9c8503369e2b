/**
 * The audit chain's canonical JSON (lib/canonical-json.ts): sorted members,
 * undefined array items as null, Dates as ISO strings; and no stack overflow
 * however deep the value (objects written through the API server can be
 * nested arbitrarily).
 */
import assert from "node:assert/strict";
import { canonicalJson } from "../../lib/canonical-json.js";

describe("canonical json of the audit chain", () => {
  const cases: Array<{ name: string; value: unknown; want: string }> = [
    { name: "scalars", value: [null, true, false, 0, -0, 1e21, "a\u0000"], want: '[null,true,false,0,0,1e+21,"a\\u0000"]' },
    { name: "members sorted by code units, undefined members dropped", value: { b: 1, a: { d: undefined, c: [2] } }, want: '{"a":{"c":[2]},"b":1}' },
    { name: "undefined and holes in arrays are null", value: [1, undefined, , 4], want: "[1,null,null,4]" },
    { name: "a Date is its ISO string", value: { at: new Date(0) }, want: '{"at":"1970-01-01T00:00:00.000Z"}' },
    { name: "the same object twice is not a cycle", value: (() => { const s = { k: 1 }; return { a: s, b: [s] }; })(), want: '{"a":{"k":1},"b":[{"k":1}]}' },
  ];
  for (const c of cases) it(`writes ${c.name}`, () => assert.equal(canonicalJson(c.value), c.want));

  it("refuses non-finite numbers and unsupported types", () => {
    assert.throws(() => canonicalJson({ a: [NaN] }), /non-finite number NaN/);
    assert.throws(() => canonicalJson({ f: () => 1 }), /unsupported function/);
    assert.throws(() => canonicalJson({ n: 1n }), /unsupported bigint/);
  });

  it("writes a 10,000-deep array and object without overflowing the stack", () => {
    let arr: unknown = [];
    let obj: unknown = 1;
    for (let i = 1; i < 10_000; i++) arr = [arr];
    for (let i = 0; i < 10_000; i++) obj = { x: obj };
    assert.equal(canonicalJson(arr), "[".repeat(10_000) + "]".repeat(10_000));
    assert.equal(canonicalJson(obj), '{"x":'.repeat(10_000) + "1" + "}".repeat(10_000));
  });

  it("refuses a cycle instead of looping", () => {
    const a: Record<string, unknown> = {};
    a.self = [a];
    assert.throws(() => canonicalJson(a), /circular/);
  });
});
