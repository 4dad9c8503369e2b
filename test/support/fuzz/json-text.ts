/**
 * Bodies as JSON values that may hold raw text fragments: a number no double
 * can hold (`1e400`, `18446744073709551616`) or a few thousand levels of
 * nesting only exist as text, so mutations place a {@link Raw} where the
 * fragment goes and {@link toJson} writes it verbatim.
 */
import { stringify as toYamlText } from "yaml";

/** A fragment of JSON text, written as is. */
export class Raw {
  constructor(readonly text: string) {}
}

/** A JSON value that may contain {@link Raw} fragments. */
export type Value = null | boolean | number | string | Raw | Value[] | { [key: string]: Value };

/** A plain JSON object of {@link Value}s. */
export type Fields = { [key: string]: Value };

/** True for a plain object (not an array, not a raw fragment, not null). */
export function isFields(v: unknown): v is Fields {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Raw);
}

/** Whether `v` holds a raw fragment anywhere. */
export function hasRaw(v: Value): boolean {
  if (v instanceof Raw) return true;
  if (Array.isArray(v)) return v.some(hasRaw);
  if (isFields(v)) return Object.values(v).some(hasRaw);
  return false;
}

/** JSON text of `v`; strings are escaped by JSON.stringify (lone surrogates become `\udxxx`). */
export function toJson(v: Value): string {
  if (v instanceof Raw) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(",")}]`;
  if (isFields(v)) {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`)
      .join(",")}}`;
  }
  return JSON.stringify(v);
}

/** YAML text of `v`: block YAML, or JSON (which YAML 1.2 reads) when it holds raw fragments. */
export function toYaml(v: Value): string {
  if (hasRaw(v)) return toJson(v);
  return toYamlText(v, { aliasDuplicateObjects: false });
}

/** A deep copy of a JSON value read from a file or a response (no raw fragments). */
export function fromJson(v: unknown): Value {
  return structuredClone(v) as Value;
}
