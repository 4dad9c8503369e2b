/**
 * Canonical JSON: object keys sorted by UTF-16 code units, no whitespace,
 * undefined members dropped, numbers as JSON.stringify prints them. The same
 * value always gives the same bytes, so it can be hashed or signed.
 */

/** Serialises value canonically; throws on values JSON cannot represent (NaN, functions, bigint). */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new Error(`canonical json: non-finite number ${value}`);
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
      if (value instanceof Date) return JSON.stringify(value.toISOString());
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj)
        .filter((k) => obj[k] !== undefined)
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(",")}}`;
    }
    default:
      throw new Error(`canonical json: unsupported ${typeof value}`);
  }
}
