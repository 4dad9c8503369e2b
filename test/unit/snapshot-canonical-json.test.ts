import assert from "node:assert/strict";
import { canonicalize, CanonicalizeError, type CanonicalizeErrorCode } from "../../lib/snapshot/canonical-json.js";

describe("canonical json (RFC 8785)", () => {
  describe("serialises values exactly as JCS does", () => {
    const cases: Array<{ name: string; value: unknown; want: string }> = [
      { name: "null, booleans and an empty object and array", value: [null, true, false, {}, []], want: "[null,true,false,{},[]]" },
      { name: "object members are sorted by key", value: { b: 1, a: 2, c: { z: 0, y: [3, { k: 1, j: 2 }] } }, want: '{"a":2,"b":1,"c":{"y":[3,{"j":2,"k":1}],"z":0}}' },
      { name: "array order is kept", value: [3, 1, 2], want: "[3,1,2]" },
      { name: "no whitespace is emitted", value: { "a b": " x " }, want: '{"a b":" x "}' },
      { name: "object members that are undefined are omitted", value: { a: undefined, b: 1 }, want: '{"b":1}' },
      { name: "an object without prototype is a plain object", value: Object.assign(Object.create(null) as object, { b: 1, a: 0 }), want: '{"a":0,"b":1}' },
      { name: "zero is 0", value: 0, want: "0" },
      { name: "negative zero is 0", value: -0, want: "0" },
      { name: "0.1 keeps its shortest round-trip form", value: 0.1, want: "0.1" },
      { name: "1e21 switches to exponent form", value: 1e21, want: "1e+21" },
      { name: "1e20 stays in integer form", value: 1e20, want: "100000000000000000000" },
      { name: "1e-7 switches to exponent form", value: 1e-7, want: "1e-7" },
      { name: "1e-6 stays in decimal form", value: 1e-6, want: "0.000001" },
      { name: "333333333.33333329 rounds as ECMAScript does", value: 333333333.33333329, want: "333333333.3333333" },
      { name: "4.50 drops the trailing zero", value: 4.5, want: "4.5" },
      { name: "2e-3 is 0.002", value: 2e-3, want: "0.002" },
      { name: "1e-27 stays in exponent form", value: 0.000000000000000000000000001, want: "1e-27" },
      { name: "2^53 is printed in full", value: 9007199254740992, want: "9007199254740992" },
      { name: "the largest double", value: -1.7976931348623157e308, want: "-1.7976931348623157e+308" },
      { name: "the smallest subnormal", value: 5e-324, want: "5e-324" },
      {
        name: "the RFC 8785 section 3.2.2 example",
        value: {
          numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001],
          string: "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"/",
          literals: [null, true, false],
        },
        want: '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
      },
      {
        name: "keys sort by UTF-16 code units (RFC 8785 section 3.2.3)",
        value: {
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis",
        },
        want:
          '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
          '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
      },
      { name: "a supplementary-plane key sorts before U+FB33 (code units, not code points)", value: { "\ufb33": 1, "\u{1f600}": 2 }, want: '{"\u{1f600}":2,"\ufb33":1}' },
      { name: "control characters use short escapes or lower-case \\u00XX", value: "\b\t\n\f\r\u0000\u001f\u007f", want: '"\\b\\t\\n\\f\\r\\u0000\\u001f\u007f"' },
      { name: "non-ASCII is written as UTF-8, not escaped", value: "h\u00e9llo \u4e16\u754c \u{1f600}", want: '"h\u00e9llo \u4e16\u754c \u{1f600}"' },
      { name: "the forward slash is not escaped", value: "a/b", want: '"a/b"' },
    ];
    for (const c of cases) {
      it(c.name, () => assert.equal(canonicalize(c.value), c.want));
    }
  });

  it("gives the same bytes for the same value built in different member orders", () => {
    const a = { header: { serial: 1, node: "n" }, payload: { list: [{ x: 1, y: 2 }] } };
    const b = { payload: { list: [{ y: 2, x: 1 }] }, header: { node: "n", serial: 1 } };
    assert.equal(canonicalize(a), canonicalize(b));
  });

  it("round-trips through JSON.parse to an equal value", () => {
    const v = { a: [1, "two", { three: 3.5 }], b: null, c: "\u{1f600}" };
    assert.deepEqual(JSON.parse(canonicalize(v)), v);
  });

  describe("rejects values without a canonical form with a typed error", () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const cases: Array<{ name: string; value: unknown; code: CanonicalizeErrorCode; path: string }> = [
      { name: "NaN", value: { a: NaN }, code: "NonFiniteNumber", path: "/a" },
      { name: "Infinity deep in an array", value: { a: [{ b: [1, Infinity] }] }, code: "NonFiniteNumber", path: "/a/0/b/1" },
      { name: "-Infinity at the root", value: -Infinity, code: "NonFiniteNumber", path: "" },
      { name: "undefined inside an array", value: { list: [1, undefined] }, code: "UndefinedInArray", path: "/list/1" },
      { name: "a hole in a sparse array", value: [1, , 3], code: "UndefinedInArray", path: "/1" },
      { name: "undefined at the root", value: undefined, code: "UnsupportedType", path: "" },
      { name: "a function member", value: { f: () => 1 }, code: "UnsupportedType", path: "/f" },
      { name: "a function inside an array", value: [() => 1], code: "UnsupportedType", path: "/0" },
      { name: "a bigint", value: { n: 1n }, code: "UnsupportedType", path: "/n" },
      { name: "a symbol", value: { s: Symbol("x") }, code: "UnsupportedType", path: "/s" },
      { name: "a Date (no toJSON magic)", value: { d: new Date(0) }, code: "UnsupportedType", path: "/d" },
      { name: "a Map", value: { m: new Map() }, code: "UnsupportedType", path: "/m" },
      { name: "a Buffer", value: { "a/b~c": Buffer.from("x") }, code: "UnsupportedType", path: "/a~1b~0c" },
      { name: "a lone high surrogate in a value", value: { s: "x\ud800" }, code: "LoneSurrogate", path: "/s" },
      { name: "a lone low surrogate in a key", value: { "\udc00": 1 }, code: "LoneSurrogate", path: "/\udc00" },
      { name: "a cycle", value: cyclic, code: "Circular", path: "/self" },
    ];
    for (const c of cases) {
      it(`rejects ${c.name}`, () => {
        assert.throws(
          () => canonicalize(c.value),
          (err: unknown) => err instanceof CanonicalizeError && err.code === c.code && err.path === c.path,
        );
      });
    }
  });

  describe("never overflows the stack, whatever the nesting (it walks with an explicit stack)", () => {
    const deepArray = (n: number): unknown => {
      let v: unknown = [];
      for (let i = 1; i < n; i++) v = [v];
      return v;
    };
    const deepObject = (n: number, leaf: unknown): unknown => {
      let v: unknown = leaf;
      for (let i = 0; i < n; i++) v = { a: v, b: i };
      return v;
    };
    it("serialises a 10,000-deep array", () => assert.equal(canonicalize(deepArray(10_000)), "[".repeat(10_000) + "]".repeat(10_000)));
    it("serialises a 100,000-deep array", () => assert.equal(canonicalize(deepArray(100_000)).length, 200_000));
    it("serialises a 10,000-deep object, members sorted at every level", () => {
      let want = "1";
      for (let i = 0; i < 10_000; i++) want = `{"a":${want},"b":${i}}`;
      assert.equal(canonicalize(deepObject(10_000, 1)), want);
    });
    it("names the path of a failure 10,000 levels down", () => {
      assert.throws(
        () => canonicalize(deepObject(10_000, [1, Infinity])),
        (err: unknown) => err instanceof CanonicalizeError && err.code === "NonFiniteNumber" && err.path === "/a".repeat(10_000) + "/1",
      );
    });
    it("finds a cycle 10,000 levels down", () => {
      const bottom: Record<string, unknown> = {};
      const top = deepObject(10_000, bottom);
      bottom.up = top;
      assert.throws(() => canonicalize(top), (err: unknown) => err instanceof CanonicalizeError && err.code === "Circular" && err.path === "/a".repeat(10_000) + "/up");
    });
  });

  it("accepts the same object twice when it is not its own ancestor", () => {
    const shared = { k: 1 };
    assert.equal(canonicalize({ a: shared, b: [shared, shared] }), '{"a":{"k":1},"b":[{"k":1},{"k":1}]}');
  });

  describe("frozen values (written once, then reused)", () => {
    it("writes a deep-frozen value as the same bytes as its unfrozen copy, every time", () => {
      const entry = Object.freeze({ node: "c.n-1", endpoints: Object.freeze(["10.0.0.1:4433"]), pin: "sha256:ab" });
      const plain = { node: "c.n-1", endpoints: ["10.0.0.1:4433"], pin: "sha256:ab" };
      const want = canonicalize({ a: [plain, plain], b: plain });
      assert.equal(canonicalize({ a: [entry, entry], b: entry }), want);
      assert.equal(canonicalize({ a: [entry, entry], b: entry }), want);
      assert.equal(canonicalize(entry), canonicalize(plain));
    });

    it("never reuses the text of a frozen object whose nested array can still change", () => {
      const endpoints = ["10.0.0.1:4433"];
      const entry = Object.freeze({ node: "c.n-1", endpoints });
      assert.equal(canonicalize([entry]), '[{"endpoints":["10.0.0.1:4433"],"node":"c.n-1"}]');
      endpoints.push("10.0.0.2:4433");
      assert.equal(canonicalize([entry]), '[{"endpoints":["10.0.0.1:4433","10.0.0.2:4433"],"node":"c.n-1"}]');
    });

    it("reports an error inside a frozen value with its whole pointer, and a cycle through it", () => {
      const bad = Object.freeze({ port: Number.NaN });
      assert.throws(() => canonicalize({ peers: [{ ok: 1 }, bad] }), (err: unknown) => err instanceof CanonicalizeError && err.code === "NonFiniteNumber" && err.path === "/peers/1/port");
      const outer: { inner?: object } = {};
      outer.inner = Object.freeze({ back: outer });
      assert.throws(() => canonicalize(outer), (err: unknown) => err instanceof CanonicalizeError && err.code === "Circular");
    });
  });
});
