/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace,
 * undefined members dropped, numbers as JSON.stringify prints them. The same
 * value always gives the same bytes, so it can be hashed or signed.
 *
 * The walk keeps its own stack rather than recursing: the audit chain hashes
 * objects written through the API server, whose nesting a client chooses, and
 * no depth may turn into a stack overflow.
 */

/** An open array or object of the walk; `next` indexes the array or the sorted `keys`. */
interface Frame {
  readonly container: object;
  readonly keys: string[] | undefined;
  next: number;
}

function scalar(value: unknown): string {
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new Error(`canonical json: non-finite number ${value}`);
      return JSON.stringify(value);
    default:
      throw new Error(`canonical json: unsupported ${typeof value}`);
  }
}

/**
 * Serialises value canonically; throws on values JSON cannot represent (NaN,
 * functions, bigint) and on cycles. Undefined array items are written as
 * null, Dates as their ISO string (unlike lib/snapshot/canonical-json.ts,
 * which is strict RFC 8785).
 */
export function canonicalJson(value: unknown): string {
  if (value === undefined) throw new Error("canonical json: unsupported undefined");
  const stack: Frame[] = [];
  const ancestors = new Set<object>();
  let out = "";
  let v: unknown = value;
  for (;;) {
    if (v === null || v === undefined) {
      // undefined only reaches here as an array item (members that are undefined are skipped).
      out += "null";
    } else if (typeof v !== "object") {
      out += scalar(v);
    } else if (v instanceof Date) {
      out += JSON.stringify(v.toISOString());
    } else {
      if (ancestors.has(v)) throw new Error("canonical json: circular reference");
      ancestors.add(v);
      if (Array.isArray(v)) {
        out += "[";
        stack.push({ container: v, keys: undefined, next: 0 });
      } else {
        const obj = v as Record<string, unknown>;
        out += "{";
        stack.push({ container: v, keys: Object.keys(obj).filter((k) => obj[k] !== undefined).sort(), next: 0 });
      }
    }
    for (;;) {
      const top = stack[stack.length - 1];
      if (top === undefined) return out;
      const { keys } = top;
      const length = keys === undefined ? (top.container as unknown[]).length : keys.length;
      if (top.next < length) {
        if (top.next > 0) out += ",";
        if (keys === undefined) {
          v = (top.container as unknown[])[top.next++];
        } else {
          const k = keys[top.next++] as string;
          out += `${JSON.stringify(k)}:`;
          v = (top.container as Record<string, unknown>)[k];
        }
        break;
      }
      out += keys === undefined ? "]" : "}";
      ancestors.delete(top.container);
      stack.pop();
    }
  }
}
