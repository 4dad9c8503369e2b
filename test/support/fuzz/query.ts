/**
 * Query parameters, content types and Accept headers a hostile client sends:
 * out-of-range numbers, forged continue tokens, booleans spelled every way,
 * selector garbage, bad escapes and repeated parameters.
 */
import type { Rng } from "./rng.js";

function forgedContinue(rng: Rng): string {
  const tokens: unknown[] = [
    { rv: "99999999999999999999", ns: "", n: "x" },
    { rv: 1e30, ns: "", n: "" },
    { rv: -1, ns: "", n: "" },
    { rv: "abc", ns: 5, n: null },
    { rv: 1, ns: { a: 1 }, n: [] },
    { rv: 9007199254740993, ns: "\u0000", n: "\ud800" },
    [],
    "str",
    null,
  ];
  const choice = rng.int(0, tokens.length + 2);
  if (choice === tokens.length) return "not base64 !!";
  if (choice === tokens.length + 1) return Buffer.from("{not json").toString("base64url");
  if (choice === tokens.length + 2) return "eyJydiI6";
  return Buffer.from(JSON.stringify(tokens[choice])).toString("base64url");
}

/** Values a generator may choose for each parameter (functions for those built per request). */
const parameters: Record<string, (rng: Rng, tag: string) => string> = {
  limit: (rng) => rng.pick(["1", "2", "500", "0", "-1", "abc", "9223372036854775807", "9223372036854775808", "99999999999999999999", "1e3", "0x10", " 5", "", "1.5"]),
  continue: forgedContinue,
  resourceVersion: (rng) => rng.pick(["0", "1", "-1", "abc", "99999999999999999999", "9223372036854775808", "18446744073709551615", "1.5", "", " 1", "1e3"]),
  resourceVersionMatch: (rng) => rng.pick(["Exact", "NotOlderThan", "exact", "garbage", ""]),
  watch: (rng) => rng.pick(["true", "True", "TRUE", "t", "T", "1", "maybe", "false", "0", "yes", ""]),
  allowWatchBookmarks: (rng) => rng.pick(["true", "True", "1", "maybe"]),
  sendInitialEvents: (rng) => rng.pick(["true", "false", "maybe"]),
  timeoutSeconds: (rng) => rng.pick(["0", "1", "-1", "abc", "1.5", "99999999999999999999"]),
  fieldValidation: (rng) => rng.pick(["Strict", "Warn", "Ignore", "strict", "garbage", ""]),
  dryRun: (rng) => rng.pick(["All", "all", "garbage", "", "All,All"]),
  labelSelector: (rng, tag) =>
    rng.pick(["a in (", "!!", "a=b,c", "x==y", "a notin (b)", "=", ",", "a in ()", "a=b=c", "ü=ü", `fabric-fuzz=${tag}`, "a".repeat(300) + "=b", "a!=", "!a,b", "a in (b,,c)", "%00=x"]),
  fieldSelector: (rng) => rng.pick(["metadata.name=x", "metadata.namespace!=y", "spec.foo=bar", "a", "==", ",", "metadata.name", "metadata.name=a=b", "status.phase=Active", "involvedObject.name=x"]),
  fieldManager: (rng) => rng.pick(["fuzz", "x".repeat(129), "ünï", "", "a b"]),
  force: (rng) => rng.pick(["true", "True", "1", "maybe"]),
  propagationPolicy: (rng) => rng.pick(["Foreground", "Background", "Orphan", "garbage", ""]),
  gracePeriodSeconds: (rng) => rng.pick(["0", "-1", "abc", "99999999999999999999"]),
  orphanDependents: (rng) => rng.pick(["true", "false", "maybe"]),
  pretty: (rng) => rng.pick(["true", "1", "maybe"]),
};

/** One to three random parameters; sometimes one repeated, sometimes raw bad escapes. */
export function randomQuery(rng: Rng, tag: string, classes: string[]): [string, string][] {
  const out: [string, string][] = [];
  const names = Object.keys(parameters);
  for (let i = rng.int(1, 3); i > 0; i--) {
    const name = rng.pick(names);
    const make = parameters[name];
    if (make === undefined) continue;
    out.push([name, make(rng, tag)]);
    classes.push(`query:${name}`);
    if (rng.chance(0.08)) {
      out.push([name, make(rng, tag)]);
      classes.push("query:repeated");
    }
  }
  return out;
}

/** Encodes parameters; with `rawEscapes`, appends one parameter with a malformed escape. */
export function queryString(params: [string, string][], rng: Rng, classes: string[]): string {
  const parts = params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeLenient(v)}`);
  if (rng.chance(0.03)) {
    parts.push(`${rng.pick(["labelSelector", "limit", "fieldManager", "continue", "resourceVersion"])}=${rng.pick(["%zz", "%00", "%C0%AF", "%", "%E0%A4%A"])}`);
    classes.push("query:bad-escape");
  }
  return parts.length === 0 ? "" : `?${parts.join("&")}`;
}

/** encodeURIComponent that does not throw on lone surrogates (they go as U+FFFD's bytes). */
export function encodeLenient(s: string): string {
  let out = "";
  for (const ch of s) {
    try {
      out += encodeURIComponent(ch);
    } catch {
      out += "%EF%BF%BD";
    }
  }
  return out;
}

/** A content type other than the right one for the request. */
export function randomContentType(rng: Rng): string {
  return rng.pick([
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
    "garbage",
    "application/json; charset=utf-16",
    "application/json;;;",
    "APPLICATION/JSON",
    "*/*",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
  ]);
}

/** An Accept header other than plain JSON. */
export function randomAccept(rng: Rng): string {
  return rng.pick([
    "application/json;as=Table;v=v1;g=meta.k8s.io",
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json",
    "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    "application/json;as=Table;v=v9;g=meta.k8s.io",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
    "text/html",
    "garbage;;;",
    "*/*",
  ]);
}
