/**
 * Query parameters parsed as kube-apiserver's parameter codec parses them:
 * one function per Go type (bool, int64, resourceVersion), each refusing a
 * malformed value with a 400 Status that names the parameter, and the
 * option validations kube runs afterwards (dryRun, fieldManager,
 * propagationPolicy), which answer 422 Invalid on the options kind.
 */
import { invalid, StatusError, type StatusCause } from "../errors.js";
import type { Query } from "./request.js";

const goTrue = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const goFalse = new Set(["0", "f", "F", "FALSE", "false", "False"]);

const int64Max = 9223372036854775807n;
const int64Min = -9223372036854775808n;
const uint64Max = 18446744073709551615n;

/** kube's FieldManagerMaxLength. */
export const maxFieldManagerLength = 128;

/**
 * The longest watch timeoutSeconds honoured (Node's timer maximum, about 24.8
 * days); kube-apiserver takes any int64, and a larger value here would
 * overflow the timer and end the watch at once.
 */
export const maxWatchTimeoutSeconds = Math.floor(0x7fffffff / 1000);

/** A 400 naming parameter `name`, with a FieldValueInvalid cause on it. */
export function badParam(name: string, value: string, why: string): StatusError {
  const message = `Invalid value: ${JSON.stringify(value)}: ${why}`;
  return new StatusError(400, "BadRequest", `${name}: ${message}`, { causes: [{ reason: "FieldValueInvalid", field: name, message }] });
}

/**
 * A boolean parameter as Go's strconv.ParseBool reads it (1, t, T, TRUE,
 * true, True and their false forms); absent or empty is false. 400 otherwise.
 */
export function boolParam(q: Query, name: string): boolean {
  const v = q[name];
  if (v === undefined || v === "") return false;
  if (goTrue.has(v)) return true;
  if (goFalse.has(v)) return false;
  throw badParam(name, v, "must be a boolean (1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)");
}

/** An int64 parameter (decimal, optional sign), or undefined when absent or empty; 400 when malformed or out of range. */
export function int64Param(q: Query, name: string): bigint | undefined {
  const v = q[name];
  if (v === undefined || v === "") return undefined;
  if (!/^[+-]?\d{1,20}$/.test(v)) throw badParam(name, v, "must be an integer");
  const n = BigInt(v);
  if (n > int64Max || n < int64Min) throw badParam(name, v, "value out of range for a 64-bit integer");
  return n;
}

/**
 * The resourceVersion parameter as a revision: undefined when absent, empty
 * or "0" (kube's "any"), else a uint64. 400 "Invalid value" otherwise, as
 * kube's storage versioner answers. A revision past int64 is also a 400:
 * revisions are PostgreSQL bigints, so no write can ever reach it, and
 * waiting for it (kube's 504 for a revision merely newer than the newest)
 * would only make the client retry forever.
 */
export function resourceVersionParam(q: Query): bigint | undefined {
  const v = q.resourceVersion;
  if (v === undefined || v === "" || v === "0") return undefined;
  if (!/^\d{1,20}$/.test(v) || BigInt(v) > uint64Max) {
    throw badParam("resourceVersion", v, `strconv.ParseUint: parsing ${JSON.stringify(v)}: invalid syntax`);
  }
  const rv = BigInt(v);
  if (rv > int64Max) throw badParam("resourceVersion", v, "no revision is ever beyond 9223372036854775807");
  return rv;
}

/** The 504 kube-apiserver answers for a resourceVersion newer than anything stored. */
export function tooLargeResourceVersion(rv: bigint, current: number): StatusError {
  return new StatusError(504, "Timeout", `Too large resource version: ${rv.toString()}, current: ${String(current)}`, {
    causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }],
    retryAfterSeconds: 1,
  });
}

/** The timeoutSeconds of a watch in ms: the default when absent or 0, 400 when malformed or negative, capped at {@link maxWatchTimeoutSeconds}. */
export function watchTimeoutMs(q: Query, defaultMs: number): number {
  const n = int64Param(q, "timeoutSeconds");
  if (n === undefined || n === 0n) return defaultMs;
  if (n < 0n) throw badParam("timeoutSeconds", q.timeoutSeconds ?? "", "must be greater than or equal to 0");
  return Number(n > BigInt(maxWatchTimeoutSeconds) ? BigInt(maxWatchTimeoutSeconds) : n) * 1000;
}

/** The options kind kube validates a write's parameters as. */
export function optionsKind(method: string): string {
  switch (method) {
    case "POST":
      return "CreateOptions";
    case "PUT":
      return "UpdateOptions";
    case "DELETE":
      return "DeleteOptions";
    default:
      return "PatchOptions";
  }
}

/** kube's 422 for invalid options: `<Kind>.meta.k8s.io "" is invalid: ...`. */
export function invalidOptions(kind: string, causes: StatusCause[]): StatusError {
  return invalid("meta.k8s.io", kind, "", causes);
}

/** Checks dryRun values (only "All"); 422 FieldValueNotSupported otherwise. */
export function checkDryRun(values: readonly string[], kind: string): boolean {
  for (const v of values) {
    if (v !== "All") {
      throw invalidOptions(kind, [{ reason: "FieldValueNotSupported", field: "dryRun", message: `Unsupported value: ${JSON.stringify(v)}: supported values: "All"` }]);
    }
  }
  return values.length > 0;
}

/** Checks a fieldManager like kube's ValidateFieldManager: at most 128 bytes, printable characters only (422). */
export function checkFieldManager(manager: string, kind: string): void {
  if (Buffer.byteLength(manager, "utf8") > maxFieldManagerLength) {
    throw invalidOptions(kind, [{ reason: "FieldValueTooLong", field: "fieldManager", message: `Too long: may not be more than ${String(maxFieldManagerLength)} bytes` }]);
  }
  const bad = /[^\p{L}\p{M}\p{N}\p{P}\p{S} ]/u.exec(manager);
  if (bad) {
    const cp = (bad[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0");
    throw invalidOptions(kind, [{ reason: "FieldValueInvalid", field: "fieldManager", message: `Invalid value: invalid character U+${cp} (at position ${String(bad.index)})` }]);
  }
}

/** kube's propagation policies. */
export const propagationPolicies = ["Orphan", "Background", "Foreground"] as const;

/** Checks a propagationPolicy (422 FieldValueNotSupported for other values). */
export function checkPropagationPolicy(v: string): void {
  if (!(propagationPolicies as readonly string[]).includes(v)) {
    throw invalidOptions("DeleteOptions", [
      { reason: "FieldValueNotSupported", field: "propagationPolicy", message: `Unsupported value: ${JSON.stringify(v)}: supported values: "Foreground", "Background", "Orphan"` },
    ]);
  }
}

/**
 * kube's ValidateListOptions rules for resourceVersionMatch (422 on
 * ListOptions): on a list it needs a resourceVersion, is forbidden with a
 * continue token, is Exact or NotOlderThan, and Exact is forbidden for
 * resourceVersion "0"; on a watch it is forbidden (it only goes with
 * sendInitialEvents, which is not served). Returns the value, or undefined
 * when absent.
 */
export function resourceVersionMatchParam(q: Query, watch: boolean): "Exact" | "NotOlderThan" | undefined {
  const match = q.resourceVersionMatch;
  if (match === undefined || match === "") return undefined;
  const causes: StatusCause[] = [];
  const forbidden = (message: string): void => void causes.push({ reason: "FieldValueForbidden", field: "resourceVersionMatch", message: `Forbidden: ${message}` });
  if (watch) {
    forbidden("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided");
    if (match !== "NotOlderThan") causes.push({ reason: "FieldValueNotSupported", field: "resourceVersionMatch", message: `Unsupported value: ${JSON.stringify(match)}: supported values: "NotOlderThan"` });
  } else {
    if (q.resourceVersion === undefined || q.resourceVersion === "") forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided");
    if (q.continue !== undefined && q.continue !== "") forbidden("resourceVersionMatch is forbidden when continue is provided");
    if (match !== "Exact" && match !== "NotOlderThan") {
      causes.push({ reason: "FieldValueNotSupported", field: "resourceVersionMatch", message: `Unsupported value: ${JSON.stringify(match)}: supported values: "Exact", "NotOlderThan", ""` });
    }
    if (match === "Exact" && q.resourceVersion === "0") forbidden('resourceVersionMatch "exact" is forbidden for resourceVersion "0"');
  }
  if (causes.length > 0) throw invalidOptions("ListOptions", causes);
  return match as "Exact" | "NotOlderThan";
}

