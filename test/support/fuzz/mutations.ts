/**
 * Mutation classes: each function takes a body (a valid object or a
 * schema-shaped random one) and breaks it in one way a hostile or buggy
 * client would. The name of each class is recorded with the request, so a
 * failure report says what kind of input provoked it.
 */
import { Raw, isFields, type Fields, type Value } from "./json-text.js";
import type { Rng } from "./rng.js";

/** What mutations need to know about the run. */
export interface MutationContext {
  /** Short run tag that every generated name carries. */
  tag: string;
  /** The run's namespaces (the first is the default target). */
  namespaces: readonly string[];
  /** Whether the target kind is namespaced. */
  namespaced: boolean;
}

/** A mutation class: changes `body` in place (or replaces it) and returns the result. */
export type Mutation = (rng: Rng, ctx: MutationContext, body: Fields) => Fields;

function metadataOf(body: Fields): Fields {
  const m = body.metadata;
  if (isFields(m)) return m;
  const fresh: Fields = {};
  body.metadata = fresh;
  return fresh;
}

/** Containers (objects and arrays) of a value, with the value itself first; at most `max`. */
function containers(v: Value, max = 200): (Fields | Value[])[] {
  const out: (Fields | Value[])[] = [];
  const stack: Value[] = [v];
  while (stack.length > 0 && out.length < max) {
    const cur = stack.pop();
    if (Array.isArray(cur)) {
      out.push(cur);
      stack.push(...cur);
    } else if (isFields(cur)) {
      out.push(cur);
      stack.push(...Object.values(cur));
    }
  }
  return out;
}

/** Sets `value` at a random place of `body`: an existing key or index, or a new key. */
function setSomewhere(rng: Rng, body: Fields, value: Value, newKey = "x"): void {
  const target = rng.pick(containers(body));
  if (Array.isArray(target)) {
    if (target.length === 0 || rng.chance(0.3)) target.push(value);
    else target[rng.int(0, target.length - 1)] = value;
    return;
  }
  const keys = Object.keys(target);
  if (keys.length === 0 || rng.chance(0.25)) target[newKey] = value;
  else target[rng.pick(keys)] = value;
}

/** Names the server must refuse or handle: case, dots, lengths, unicode, path tricks. */
export function hostileNames(tag: string): string[] {
  const base = `fz${tag}`;
  return [
    `${base}-UPPER`,
    `${base}.dots.in.name`,
    `${base}..double`,
    `${base}.`,
    `-${base}`,
    `${base}-`,
    `${base}_under`,
    `${base}-${"a".repeat(64 - base.length - 1)}`, // 64 characters: too long for a label
    `${base}.${"a".repeat(60)}.${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60 - base.length)}`, // 244: subdomain, not label
    `${base}-${"x".repeat(254 - base.length - 1)}`, // 254: too long for a subdomain
    `${base}-ünïcödé`,
    `${base}-日本`,
    `${base}%2Fslash`,
    `${base}/slash`,
    `${base} space`,
    `${base}\u0000nul`,
    `${base}\ud800`,
    "..",
    ".",
    "%2F",
    "",
  ];
}

/** metadata.name (and so the URL name, when the request takes it from the body) becomes hostile. */
export const hostileName: Mutation = (rng, ctx, body) => {
  metadataOf(body).name = rng.pick(hostileNames(ctx.tag));
  return body;
};

/** metadata.namespace names another (or a hostile) namespace than the URL. */
export const namespaceMismatch: Mutation = (rng, ctx, body) => {
  metadataOf(body).namespace = rng.pick([...ctx.namespaces.slice(1), "default", "kube-system", `fz${ctx.tag}-missing`, "Default", "..", "", "a".repeat(70)]);
  return body;
};

/** A namespace on any kind, which matters for cluster-scoped ones. */
export const namespaceOnAnyKind: Mutation = (rng, ctx, body) => {
  metadataOf(body).namespace = rng.pick(ctx.namespaces);
  return body;
};

/** Nesting a few thousand levels deep, as JSON text (arrays or objects). */
export function deepText(rng: Rng): Raw {
  const depth = rng.pick([1000, 3000, 6000]);
  if (rng.chance(0.5)) return new Raw(`${"[".repeat(depth)}1${"]".repeat(depth)}`);
  return new Raw(`${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`);
}

/** A deeply nested value somewhere in the body (under spec, a label, an unknown field...). */
export const deepNesting: Mutation = (rng, _ctx, body) => {
  setSomewhere(rng, body, deepText(rng), "deep");
  return body;
};

/** Strings the database or an HTTP header cannot hold as such. */
const badStrings = ["a\u0000b", "\u0000", "\ud800", "x\udfffy", "\udc00\ud800", "\ud83d", "ok\u0000\ud800"];

/** NUL characters and lone surrogates as a value or a key. */
export const nulAndSurrogates: Mutation = (rng, _ctx, body) => {
  const s = rng.pick(badStrings);
  if (rng.chance(0.5)) setSomewhere(rng, body, s);
  else {
    const target = rng.pick([metadataOf(body), ...containers(body).filter(isFields)]);
    const place = rng.pick(["labels", "annotations", "here"]);
    if (place === "here") target[s] = "v";
    else target[place] = { [s]: rng.chance(0.5) ? s : "v" };
  }
  return body;
};

/** Numbers beyond int64 and double, tiny fractions, negative zero. */
export const hugeNumbers: Mutation = (rng, _ctx, body) => {
  const n = rng.pick([
    "1e400",
    "-1e400",
    "1e-400",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789012345678901234567890",
    "1.5",
    "-0",
    "0.000000000000000000001",
    "1E+2",
  ]);
  setSomewhere(rng, body, new Raw(n), "n");
  return body;
};

/** Some field (metadata, spec, a label...) gets a value of another type. */
export const wrongType: Mutation = (rng, _ctx, body) => {
  const v = rng.pick<Value>([[], ["a", 1], {}, { a: { b: 1 } }, 0, -1, 3.25, true, false, null, "", "str"]);
  if (rng.chance(0.3)) {
    const key = rng.pick(["metadata", "spec", "status", "data", "stringData", "type"]);
    body[key] = v;
  } else if (rng.chance(0.4)) {
    const meta = metadataOf(body);
    meta[rng.pick(["name", "labels", "annotations", "finalizers", "ownerReferences", "managedFields", "uid", "resourceVersion", "generation", "creationTimestamp", "namespace", "generateName"])] = v;
  } else setSomewhere(rng, body, v);
  return body;
};

/** Keys no schema declares, with names that are hard to print, quote or send in a header. */
export const oddFieldNames = [
  "ünknöwn",
  "日本語",
  "a\"quote",
  "back\\slash",
  "new\r\nX-Injected: 1",
  "tab\there",
  "$patch",
  "$retainKeys",
  "$setElementOrder/x",
  "__proto__",
  "constructor",
  "prototype",
  "",
  " ",
  "a.b",
  "a/b",
  "~1",
  "emoji-😀",
  "x".repeat(300),
];

/** Unknown fields with odd names at random places. */
export const unknownFields: Mutation = (rng, _ctx, body) => {
  for (let i = rng.int(1, 3); i > 0; i--) {
    const target = rng.pick(containers(body).filter(isFields));
    target[rng.pick(oddFieldNames)] = rng.pick<Value>(["v", 1, { nested: true }, null]);
  }
  return body;
};

/** Metadata a client must not choose, or chooses badly. */
export const hostileMetadata: Mutation = (rng, ctx, body) => {
  const meta = metadataOf(body);
  const long = (n: number) => "v".repeat(n);
  switch (rng.int(0, 12)) {
    case 0:
      meta.uid = rng.pick(["6f1c2b1e-5b7e-4a57-9a59-0d1f3c1b2a44", "not-a-uuid", "", "../../etc", "00000000-0000-0000-0000-000000000000"]);
      break;
    case 1:
      meta.labels = { [rng.pick(["Bad Key", "a/b/c", "-x", "x-", `${long(64)}`, `${long(254)}/x`, "UPPER.example.com/ok", "", "ünï", "example.com/", "/x"])]: "v" };
      break;
    case 2:
      meta.labels = { ok: rng.pick([long(64), "has space", "-lead", "trail-", "ünï", "a/b", "\n", "x".repeat(1000)]) };
      break;
    case 3:
      meta.annotations = { [rng.pick(["Bad Key", "a/b/c", `${long(64)}`, "", "ünï", "/x"])]: "v" };
      break;
    case 4:
      meta.annotations = { big: long(rng.pick([1000, 262_145, 300_000])) };
      break;
    case 5:
      meta.resourceVersion = rng.pick(["abc", "-1", "0", "99999999999999999999", "1.5", " 1", ""]);
      break;
    case 6:
      delete meta.name;
      meta.generateName = rng.pick([`fz${ctx.tag}-`, `FZ${ctx.tag}-`, `fz${ctx.tag}-${long(250)}`, "", "..", `fz${ctx.tag}-ü-`]);
      break;
    case 7:
      meta.finalizers = rng.pick<Value>([["x"], ["example.com/ok", "example.com/ok"], ["Bad Finalizer"], [""], [1], ["kubernetes"]]);
      break;
    case 8:
      meta.ownerReferences = rng.pick<Value>([[{}], [{ apiVersion: "v1", kind: "ConfigMap", name: "x", uid: "not-a-uuid" }], [{ uid: 5 }]]);
      break;
    case 9:
      meta.managedFields = rng.pick<Value>([[{}], [{ manager: "x", operation: "Bogus", fieldsType: "FieldsV1", fieldsV1: { "f:nope": {} } }], [{ fieldsV1: "str" }], [null]]);
      break;
    case 10:
      meta[rng.pick(["creationTimestamp", "deletionTimestamp"])] = rng.pick(["yesterday", "2024-13-45T99:99:99Z", "2024-01-01T00:00:00Z", ""]);
      break;
    case 11:
      meta.generation = rng.pick<Value>([-1, 0, 1.5, 1e300, "1"]);
      break;
    default:
      meta.deletionGracePeriodSeconds = rng.pick<Value>([-1, 0, 1e12, "x"]);
      break;
  }
  return body;
};

/** A field disappears: a required one, metadata, spec, or any other. */
export const dropFields: Mutation = (rng, _ctx, body) => {
  const target = rng.pick(containers(body).filter(isFields));
  const keys = Object.keys(target);
  if (keys.length > 0) delete target[rng.pick(keys)];
  return body;
};

/** A field becomes null, metadata and spec included. */
export const nullify: Mutation = (rng, _ctx, body) => {
  if (rng.chance(0.3)) body[rng.pick(["metadata", "spec", "status", "data"])] = null;
  else {
    const target = rng.pick(containers(body).filter(isFields));
    const keys = Object.keys(target);
    if (keys.length > 0) target[rng.pick(keys)] = null;
  }
  return body;
};

/** Every mutation class by name, for weighted choice and for reports. */
export const mutations: Record<string, Mutation> = {
  hostileName,
  namespaceMismatch,
  namespaceOnAnyKind,
  deepNesting,
  nulAndSurrogates,
  hugeNumbers,
  wrongType,
  unknownFields,
  hostileMetadata,
  dropFields,
  nullify,
};

/** Bodies that are not an object at all, as text or bytes. */
export function garbageBody(rng: Rng): { name: string; bytes: Buffer } {
  const depth = rng.pick([1000, 3000, 6000]);
  const choices: [string, () => Buffer][] = [
    ["random-bytes", () => rng.bytes(rng.int(1, 200))],
    ["empty", () => Buffer.alloc(0)],
    ["json-null", () => Buffer.from("null")],
    ["json-array", () => Buffer.from("[]")],
    ["json-string", () => Buffer.from('"str"')],
    ["json-number", () => Buffer.from("42")],
    ["truncated-json", () => Buffer.from('{"apiVersion":"v1","metadata":{"name":"x"')],
    ["invalid-utf8", () => Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0xff, 0x22, 0x7d])],
    ["protobuf-magic", () => Buffer.concat([Buffer.from([0x6b, 0x38, 0x73, 0x00]), rng.bytes(rng.int(0, 64))])],
    ["deep-json-array", () => Buffer.from(`${"[".repeat(depth)}${"]".repeat(depth)}`)],
    ["deep-yaml-flow", () => Buffer.from(`metadata: ${"[".repeat(depth)}${"]".repeat(depth)}`)],
    ["deep-yaml-block", () => Buffer.from(Array.from({ length: Math.min(depth, 2000) }, (_, i) => `${" ".repeat(i)}a:`).join("\n") + " 1")],
    ["yaml-alias-bomb", () => Buffer.from(yamlAliasBomb())],
    ["yaml-duplicate-keys", () => Buffer.from("metadata:\n  name: a\nmetadata:\n  name: b\n")],
    ["yaml-merge-key", () => Buffer.from("base: &b {name: x}\nmetadata:\n  <<: *b\n")],
    ["yaml-tags", () => Buffer.from("metadata: !!binary aGVsbG8=\nspec: !!set {a, b}\n")],
    ["yaml-multi-doc", () => Buffer.from("metadata: {name: a}\n---\nmetadata: {name: b}\n")],
  ];
  const [name, make] = rng.pick(choices);
  return { name, bytes: make() };
}

/** The billion-laughs document: nine levels of ten aliases each. */
export function yamlAliasBomb(): string {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  const names = "abcdefghi";
  for (let i = 1; i < names.length; i++) {
    const prev = names[i - 1] ?? "a";
    lines.push(`${names[i] ?? "z"}: &${names[i] ?? "z"} [${Array(9).fill(`*${prev}`).join(",")}]`);
  }
  lines.push("metadata: {name: bomb}", "spec: *i");
  return lines.join("\n") + "\n";
}
