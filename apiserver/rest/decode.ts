/**
 * Decoding request bodies safely. JSON is scanned for its nesting depth
 * before JSON.parse (an iterative scan: recursive code further on, from
 * pruning to PostgreSQL's jsonb parser, must never meet an unbounded
 * depth); YAML is parsed with an alias budget against expansion bombs and
 * checked for depth afterwards (a recursive alias shows as unbounded depth).
 * Every decoded string, key or value, must be storable in jsonb: no NUL and
 * no lone UTF-16 surrogate.
 */
import { parse as parseYamlText } from "yaml";
import { StatusError } from "../errors.js";

/** The deepest nesting of objects and arrays a body may have (kube's JSON decoder allows 10,000). */
export const maxBodyDepth = 1000;

/**
 * The `yaml` package's alias budget: how many nodes alias resolution may
 * produce relative to the document, refusing a "billion laughs" document.
 */
export const maxYamlAliasCount = 100;

/** A 400 about the body as a whole. */
function undecodable(what: string, why: string): StatusError {
  return new StatusError(400, "BadRequest", `error decoding ${what}: ${why}`);
}

/** A 400 naming the field path of a value that cannot be stored. */
function badValue(what: string, field: string, why: string): StatusError {
  const message = `Invalid value: ${why}`;
  return new StatusError(400, "BadRequest", `error decoding ${what}: ${field}: ${message}`, {
    causes: [{ reason: "FieldValueInvalid", field, message }],
  });
}

/** Whether JSON text nests objects and arrays deeper than `max`, counted without recursion and outside strings. */
export function jsonDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Parses a JSON body: 400 when deeper than {@link maxBodyDepth}, malformed, or holding a string jsonb cannot store. */
export function decodeJson(raw: Buffer | string, what: string): unknown {
  const text = typeof raw === "string" ? raw : raw.toString("utf8");
  if (jsonDeeperThan(text, maxBodyDepth)) throw undecodable(what, `nesting depth exceeds the maximum of ${String(maxBodyDepth)}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw undecodable(what, err instanceof Error ? err.message : String(err));
  }
  checkDecoded(v, what);
  return v;
}

/** Parses a YAML body into plain JSON values: 400 on an alias bomb, a recursive alias, excessive depth or an unstorable string. */
export function decodeYaml(raw: Buffer | string, what: string): unknown {
  const text = typeof raw === "string" ? raw : raw.toString("utf8");
  let v: unknown;
  try {
    v = parseYamlText(text, { maxAliasCount: maxYamlAliasCount });
  } catch (err) {
    if (err instanceof RangeError && /call stack/i.test(err.message)) {
      throw undecodable(what, `nesting depth exceeds the maximum of ${String(maxBodyDepth)}`);
    }
    throw undecodable(what, err instanceof Error ? err.message : String(err));
  }
  checkDecoded(v, what);
  // Aliases share objects between places; later code mutates copies of the
  // document, so hand it over as a tree (the check bounded its size).
  return JSON.parse(JSON.stringify(v)) as unknown;
}

/** What the iterative walk visits: a value, its depth, and how to name its path. */
interface Visit {
  value: unknown;
  depth: number;
  parent: Visit | undefined;
  key: string | number | undefined;
}

function pathOf(v: Visit | undefined): string {
  const parts: Array<string | number> = [];
  for (let n = v; n !== undefined && n.key !== undefined; n = n.parent) parts.push(n.key);
  let out = "";
  for (const k of parts.reverse()) {
    if (typeof k === "number") out += `[${String(k)}]`;
    else if (/^[A-Za-z0-9_$-]+$/.test(k)) out += out === "" ? k : `.${k}`;
    else out += `[${JSON.stringify(k)}]`;
  }
  return out;
}

/** Why string `s` cannot be stored in PostgreSQL text or jsonb (NUL, lone surrogates), if it cannot. */
export function unstorableText(s: string): string | undefined {
  if (s.includes("\u0000")) return "must not contain NUL (\\u0000) characters";
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s)) return "must not contain unpaired UTF-16 surrogates";
  return undefined;
}

/**
 * Checks a decoded body without recursion: depth at most {@link maxBodyDepth}
 * (a cyclic YAML alias exceeds it) and every key and string storable. 400
 * naming the field path otherwise.
 */
export function checkDecoded(root: unknown, what: string): void {
  const stack: Visit[] = [{ value: root, depth: 0, parent: undefined, key: undefined }];
  for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
    const value = v.value;
    if (typeof value === "string") {
      const why = unstorableText(value);
      if (why) throw badValue(what, pathOf(v) || "<body>", why);
      continue;
    }
    if (value === null || typeof value !== "object") continue;
    const depth = v.depth + 1;
    if (depth > maxBodyDepth) throw undecodable(what, `nesting depth exceeds the maximum of ${String(maxBodyDepth)} (or a YAML alias refers to itself)`);
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i] as unknown, depth, parent: v, key: i });
      continue;
    }
    for (const [k, child] of Object.entries(value as Record<string, unknown>)) {
      const why = unstorableText(k);
      if (why) throw badValue(what, pathOf(v) || "<body>", `key ${why}`);
      stack.push({ value: child, depth, parent: v, key: k });
    }
  }
}
