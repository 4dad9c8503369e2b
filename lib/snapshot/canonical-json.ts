/**
 * RFC 8785 (JSON Canonicalization Scheme, JCS) serialisation: the bytes that
 * snapshot signatures cover, so the control plane and every agent must produce
 * exactly the same string for the same value.
 *
 * JCS is deliberately defined in terms of ECMAScript: strings are escaped as
 * `JSON.stringify` escapes them (ES2019 "well-formed JSON.stringify"), numbers
 * are printed by `Number.prototype.toString` (which `JSON.stringify` uses for
 * finite numbers: 1e21, 1e-7, 0.1, and -0 as "0"), and object members are
 * sorted by their names as arrays of UTF-16 code units (what
 * `Array.prototype.sort` does without a comparator). So the primitives are
 * delegated to the engine and this module only adds ordering and strictness.
 *
 * Stricter than `JSON.stringify` on purpose, because a silently changed value
 * under a signature is worse than an error at build time:
 * - non-finite numbers, bigint, functions, symbols: rejected, wherever they are;
 * - `undefined` (or a hole) inside an array: rejected (JSON.stringify would
 *   write `null`, so the signed bytes would not round-trip to the same value);
 * - an object member whose value is `undefined` is omitted, like
 *   JSON.stringify, so optional TypeScript fields can be left unset;
 * - strings with lone surrogates: rejected (RFC 8785 requires I-JSON, RFC 7493);
 * - only plain objects and arrays: a Date, Map, Buffer or class instance is
 *   rejected, and `toJSON` is never called (a Map would otherwise sign as `{}`);
 * - cycles: rejected.
 *
 * Why hand-written rather than the npm `canonicalize` package (5.1.0, a
 * well-known JCS implementation, Apache-2.0): not speed. Measured on this
 * machine kind (Node 20.20, 20k runs over 200 distinct values, third round),
 * both give identical bytes and the same speed:
 *
 *   value                          hand-written  canonicalize@5.1.0  lib/canonical-json  JSON.stringify*
 *   typical snapshot (5.8 KB)            41 µs               44 µs               53 µs            13 µs
 *   large snapshot (20.9 KB)            159 µs              159 µs              188 µs            40 µs
 *   (* unsorted, so not canonical: the floor for any JS implementation)
 *   A rerun with the machine loaded (load average 4 on 2 cores): 172 / 197 /
 *   248 / 52 µs on the 20.9 KB value; same ranking.
 *
 * The cost is intrinsic (key sorting plus per-string escaping); dropping the
 * cycle set or the surrogate check gained < 4%. The reasons are semantics:
 * the package silently changes values under a signature: `undefined` and
 * functions inside arrays become `null`, function members vanish, `toJSON` is
 * honoured (a Date becomes a string, a Buffer `{"data":[..],"type":"Buffer"}`),
 * a Map becomes `{}`, a function at the root returns `undefined`; its errors
 * are plain `Error`s without a path. Wrapping it to add those checks would
 * cost a second walk, and it would be one more dependency in the agent.
 * (lib/canonical-json.ts, used by the audit chain, predates this module; it
 * maps undefined in arrays to null and serialises Dates, so it is not JCS-strict.)
 *
 * The walk keeps its own stack instead of recursing, so no nesting depth can
 * overflow the call stack: canonicalize() throws CanonicalizeError or
 * nothing. Against the former recursive walk on the same values (20k runs,
 * machine loaded): typical 53-59 µs versus 48-56 µs, large 176-184 µs versus
 * 163-187 µs, i.e. within noise.
 */

/** Why a value cannot be canonicalised. PascalCase so it can be reported as a reason. */
export type CanonicalizeErrorCode =
  | "NonFiniteNumber"
  | "UndefinedInArray"
  | "UnsupportedType"
  | "LoneSurrogate"
  | "Circular";

/**
 * A value that has no canonical JSON form. `path` is a JSON Pointer (RFC 6901)
 * to the offending value, "" for the root.
 */
export class CanonicalizeError extends Error {
  override readonly name = "CanonicalizeError";
  constructor(
    readonly code: CanonicalizeErrorCode,
    readonly path: string,
    readonly reason: string,
  ) {
    super(`canonical json: ${reason} at ${path === "" ? "(root)" : path}`);
  }
}

/** Thrown inside the walk; the path is read off the walk's own stack when it is caught. */
class Failure {
  constructor(
    readonly code: CanonicalizeErrorCode,
    readonly reason: string,
  ) {}
}

/**
 * One open array or object of the walk. `next` is the index (into the array,
 * or into the sorted `keys`) of the member to visit next, so the member being
 * written is `next - 1`: that is what a failure's path names.
 */
interface Frame {
  readonly container: object;
  /** Sorted member names; undefined for an array. */
  readonly keys: string[] | undefined;
  next: number;
  /** Whether a member was written (an object skips undefined members, so its commas cannot follow `next`). */
  wrote: boolean;
}

function pointerOf(stack: readonly Frame[]): string {
  let out = "";
  for (const f of stack) {
    const token = f.keys === undefined ? String(f.next - 1) : (f.keys[f.next - 1] ?? "");
    out += `/${token.replace(/~/g, "~0").replace(/\//g, "~1")}`;
  }
  return out;
}

/**
 * Returns the RFC 8785 canonical JSON text of `value`. The same value always
 * gives the same string; the UTF-8 encoding of that string is what gets hashed
 * or signed. Throws {@link CanonicalizeError} for values listed in the module
 * comment, and nothing else: the walk keeps its own stack, so no nesting depth
 * can overflow the call stack (limits on depth belong to whoever parses
 * untrusted input, see lib/json-limits.ts).
 */
export function canonicalize(value: unknown): string {
  const stack: Frame[] = [];
  try {
    return walk(value, stack, true).text;
  } catch (err) {
    if (!(err instanceof Failure)) throw err;
    throw new CanonicalizeError(err.code, pointerOf(stack), err.reason);
  }
}

// String.prototype.isWellFormed is in Node 20 (V8 11.3) but not in the ES2022 lib types.
const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed;

function writeString(s: string): string {
  if (!isWellFormed.call(s)) throw new Failure("LoneSurrogate", "string with a lone surrogate");
  return JSON.stringify(s);
}

/**
 * The canonical text of frozen objects and arrays whose nested objects and
 * arrays are all frozen too: nothing in them can change, so their text is
 * written once and reused (a snapshot builder shares one frozen peer entry
 * among the payloads of every node listing that peer).
 */
const frozenText = new WeakMap<object, string>();

/**
 * `s` made one flat string in place. A string built with `+=` is a tree of
 * pieces that V8 flattens when it is encoded; a kept text that stayed a tree
 * would be walked piece by piece again inside every payload that splices it
 * (measured: encoding a mesh payload 2-3x slower). Converting to a number
 * reads the characters, which flattens the tree once.
 */
function flattened(s: string): string {
  Number(s);
  return s;
}

/**
 * Writes `root` depth-first: a scalar is written at once, an array or object
 * opens a frame; then the top frame yields its next member, or closes. The
 * output is built in one string, in order. With `memo`, a frozen object or
 * array is written by a nested walk over the same stack (so error pointers
 * stay whole; the nested walk does not memoise, so nesting stays one level)
 * and its text kept when everything in it was frozen. `frozen` tells whether
 * every object and array written was frozen.
 */
function walk(root: unknown, stack: Frame[], memo: boolean): { text: string; frozen: boolean } {
  const base = stack.length;
  const ancestors = new Set<object>();
  let frozen = true;
  let out = "";
  let value: unknown = root;
  for (;;) {
    switch (typeof value) {
      case "string":
        out += writeString(value);
        break;
      case "number":
        if (!Number.isFinite(value)) throw new Failure("NonFiniteNumber", `non-finite number ${value}`);
        // Number::toString is the JCS number format; JSON.stringify applies it
        // and turns -0 into "0" as JCS requires.
        out += JSON.stringify(value);
        break;
      case "boolean":
        out += value ? "true" : "false";
        break;
      case "object": {
        if (value === null) {
          out += "null";
          break;
        }
        if (memo && Object.isFrozen(value)) {
          let text = frozenText.get(value);
          if (text === undefined) {
            const inner = walk(value, stack, false);
            text = inner.text;
            if (inner.frozen) frozenText.set(value, flattened(text));
          }
          out += text;
          break;
        }
        if (ancestors.has(value)) throw new Failure("Circular", "circular reference");
        if (!Object.isFrozen(value)) frozen = false;
        if (Array.isArray(value)) {
          out += "[";
          stack.push({ container: value, keys: undefined, next: 0, wrote: false });
        } else {
          const proto: unknown = Object.getPrototypeOf(value);
          if (proto !== Object.prototype && proto !== null) {
            const kind = (value as { constructor?: { name?: string } }).constructor?.name ?? "object";
            throw new Failure("UnsupportedType", `unsupported object ${kind}`);
          }
          out += "{";
          // Default sort compares UTF-16 code units: the order RFC 8785 §3.2.3 asks for.
          stack.push({ container: value, keys: Object.keys(value).sort(), next: 0, wrote: false });
        }
        ancestors.add(value);
        break;
      }
      default:
        throw new Failure("UnsupportedType", `unsupported ${typeof value}`);
    }

    // The next value to write: the next member of the innermost open container.
    for (;;) {
      if (stack.length === base) return { text: out, frozen };
      const top = stack[stack.length - 1] as Frame;
      const { keys } = top;
      if (keys === undefined) {
        const list = top.container as unknown[];
        if (top.next < list.length) {
          // Index access (not forEach/map) so that holes are seen as undefined.
          value = list[top.next++];
          if (value === undefined) throw new Failure("UndefinedInArray", "undefined in array");
          if (top.wrote) out += ",";
          top.wrote = true;
          break;
        }
        out += "]";
      } else {
        const record = top.container as Record<string, unknown>;
        let member: unknown;
        while (top.next < keys.length && (member = record[keys[top.next] as string]) === undefined) top.next++;
        if (top.next < keys.length) {
          const key = keys[top.next++] as string;
          if (top.wrote) out += ",";
          top.wrote = true;
          out += writeString(key);
          out += ":";
          value = member;
          break;
        }
        out += "}";
      }
      ancestors.delete(top.container);
      stack.pop();
    }
  }
}
