/**
 * Limits on network JSON (lib/json-limits.ts): the depth scan counts only
 * brackets outside strings and never recurses, so thousands of levels are
 * refused with a typed error instead of a stack overflow; the strings check
 * refuses what PostgreSQL's jsonb cannot store.
 */
import assert from "node:assert/strict";
import { JsonLimitError, jsonNestingDepth, parseJsonWithLimits, type JsonLimitCode } from "../../lib/json-limits.js";

const nestedArrays = (n: number): string => "[".repeat(n) + "]".repeat(n);
const nestedObjects = (n: number): string => '{"a":'.repeat(n) + "1" + "}".repeat(n);

function refusedWith(code: JsonLimitCode) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof JsonLimitError, `expected a JsonLimitError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  };
}

describe("json limits: depth scan", () => {
  const cases: Array<{ name: string; text: string; depth: number }> = [
    { name: "a number has depth 0", text: "1", depth: 0 },
    { name: "a string has depth 0", text: '"x"', depth: 0 },
    { name: "an empty array has depth 1", text: "[]", depth: 1 },
    { name: "an object holding an array has depth 2", text: '{"a":[1]}', depth: 2 },
    { name: "siblings do not add up", text: "[[1],[2],[[3]]]", depth: 3 },
    { name: "brackets inside a string do not count", text: `["${"[{".repeat(5000)}"]`, depth: 1 },
    { name: "an escaped quote does not end the string", text: '["a\\"[[[[", [1]]', depth: 2 },
    { name: "an escaped backslash before the closing quote ends the string", text: '["a\\\\", [[1]]]', depth: 3 },
    { name: "brackets inside a member name do not count", text: '{"[[[[":{"}}}}":[]}}', depth: 3 },
    { name: "10,000 nested arrays", text: nestedArrays(10_000), depth: 10_000 },
    { name: "10,000 nested objects", text: nestedObjects(10_000), depth: 10_000 },
  ];
  for (const c of cases) it(c.name, () => assert.equal(jsonNestingDepth(c.text), c.depth));

  it("stops scanning as soon as the depth passes the bound", () => {
    assert.equal(jsonNestingDepth(nestedArrays(1_000_000), 64), 65);
  });

  it("never throws on text that is not JSON", () => {
    for (const t of ['"unterminated', '["\\', "]]]]", "{{{", ""]) assert.equal(typeof jsonNestingDepth(t), "number");
  });
});

describe("json limits: parseJsonWithLimits", () => {
  const limits = { maxBytes: 64 * 1024, maxDepth: 64 };

  it("parses a value exactly at the depth limit", () => {
    assert.deepEqual(parseJsonWithLimits(nestedArrays(64), limits), JSON.parse(nestedArrays(64)));
    assert.deepEqual(parseJsonWithLimits(Buffer.from(nestedObjects(64)), limits), JSON.parse(nestedObjects(64)));
  });

  it("parses deep-looking brackets inside a string", () => {
    const text = JSON.stringify({ note: "[".repeat(10_000) + "{".repeat(10_000) });
    assert.deepEqual(parseJsonWithLimits(text, limits), JSON.parse(text));
  });

  it("keeps an escaped U+0000 and lone surrogate unless strings are checked", () => {
    assert.deepEqual(parseJsonWithLimits('{"a":"x\\u0000","b":"\\ud800"}', limits), { a: "x\u0000", b: "\ud800" });
  });

  const refused: Array<{ name: string; input: string | Buffer; limits?: Partial<Parameters<typeof parseJsonWithLimits>[1]>; code: JsonLimitCode }> = [
    { name: "one level above the depth limit (arrays)", input: nestedArrays(65), code: "TooDeep" },
    { name: "one level above the depth limit (objects)", input: nestedObjects(65), code: "TooDeep" },
    { name: "a 10,000-deep array of a few KB", input: Buffer.from(nestedArrays(10_000)), code: "TooDeep" },
    { name: "a 10,000-deep object", input: nestedObjects(10_000), code: "TooDeep" },
    { name: "a deep array under a valid prefix", input: `{"ok":[1,2,3],"x":${nestedArrays(5000)}}`, code: "TooDeep" },
    { name: "a deep but unterminated array (before trying to parse it)", input: "[".repeat(5000), code: "TooDeep" },
    { name: "one byte over the size limit", input: Buffer.alloc(65 * 1024, 0x20), code: "TooLarge" },
    { name: "a string input over the size limit, counted in UTF-8 bytes", input: JSON.stringify("é".repeat(33 * 1024)), code: "TooLarge" },
    { name: "bytes that are not UTF-8", input: Buffer.from([0x7b, 0xff, 0x7d]), code: "NotUtf8" },
    { name: "a surrogate encoded in UTF-8 (CESU-8)", input: Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), code: "NotUtf8" },
    { name: "text that is not JSON", input: "{version: 7", code: "NotJson" },
    { name: "an empty body", input: "", code: "NotJson" },
    { name: "a byte order mark", input: Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), code: "NotJson" },
    { name: "an escaped U+0000 in a value", input: '{"a":["x\\u0000"]}', limits: { wellFormedStrings: true }, code: "NulCharacter" },
    { name: "an escaped U+0000 in a member name", input: '{"\\u0000":1}', limits: { wellFormedStrings: true }, code: "NulCharacter" },
    { name: "an escaped lone high surrogate in a value", input: '{"a":{"b":"\\ud800x"}}', limits: { wellFormedStrings: true }, code: "LoneSurrogate" },
    { name: "an escaped lone low surrogate in a member name", input: '{"\\udc00":1}', limits: { wellFormedStrings: true }, code: "LoneSurrogate" },
  ];
  for (const c of refused) {
    it(`refuses ${c.name} with ${c.code}`, () => {
      assert.throws(() => parseJsonWithLimits(c.input, { ...limits, ...c.limits }), refusedWith(c.code));
    });
  }

  it("accepts an escaped surrogate pair when strings are checked", () => {
    assert.deepEqual(parseJsonWithLimits('{"a":"\\ud83d\\ude00"}', { ...limits, wellFormedStrings: true }), { a: "😀" });
  });

  it("checks strings at any depth the limit allows without recursing", () => {
    const deep = '{"a":'.repeat(5000) + '"\\u0000"' + "}".repeat(5000);
    assert.throws(() => parseJsonWithLimits(deep, { maxBytes: 1 << 20, maxDepth: 10_000, wellFormedStrings: true }), refusedWith("NulCharacter"));
  });
});
