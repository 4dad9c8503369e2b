/**
 * The rules kube-apiserver applies to the built-in kinds beyond their OpenAPI
 * schema (which validation.ts checks): ConfigMap and Secret keys are file
 * names, a ConfigMap key lives in data or binaryData but not both, payloads
 * stay under 1 MiB, `immutable` objects keep their data, a Secret keeps its
 * type, a Lease's durations are positive and a Namespace's finalizers are
 * qualified. After `ValidateConfigMap`, `ValidateSecret`, `ValidateLease` and
 * `ValidateNamespace` in k8s.io/kubernetes.
 */
import {
  forbiddenCause,
  invalidCause,
  isConfigMapKey,
  isQualifiedName,
  tooLongCause,
  type FieldCause,
} from "./object-meta.js";
import { isObj, jsonEqual, type Obj } from "./object.js";

/** The largest payload of a Secret or ConfigMap, in bytes (`core.MaxSecretSize`). */
export const MAX_SECRET_SIZE = 1024 * 1024;

/** kube prints a map key in a field path as `data[key]`. */
function keyPath(base: string, key: string): string {
  return `${base}[${key}]`;
}

function entries(v: unknown): Array<[string, unknown]> {
  return isObj(v) ? Object.entries(v) : [];
}

function decodedLength(v: unknown): number {
  return typeof v === "string" ? Buffer.from(v, "base64").length : 0;
}

function textLength(v: unknown): number {
  return typeof v === "string" ? Buffer.byteLength(v, "utf8") : 0;
}

function configMapCauses(obj: Obj): FieldCause[] {
  const out: FieldCause[] = [];
  const data = isObj(obj.data) ? obj.data : {};
  const binary = isObj(obj.binaryData) ? obj.binaryData : {};
  let total = 0;
  for (const [k, v] of entries(obj.data)) {
    for (const m of isConfigMapKey(k)) out.push(invalidCause(keyPath("data", k), k, m));
    if (k in binary) out.push(invalidCause(keyPath("data", k), k, "duplicate of key present in binaryData"));
    total += textLength(v);
  }
  for (const [k, v] of entries(obj.binaryData)) {
    for (const m of isConfigMapKey(k)) out.push(invalidCause(keyPath("binaryData", k), k, m));
    if (k in data) out.push(invalidCause(keyPath("binaryData", k), k, "duplicate of key present in data"));
    total += decodedLength(v);
  }
  if (total > MAX_SECRET_SIZE) out.push(tooLongCause("", MAX_SECRET_SIZE));
  return out;
}

function secretCauses(obj: Obj): FieldCause[] {
  const out: FieldCause[] = [];
  let total = 0;
  for (const [k, v] of entries(obj.data)) {
    for (const m of isConfigMapKey(k)) out.push(invalidCause(keyPath("data", k), k, m));
    total += decodedLength(v);
  }
  // stringData is folded into data before kube validates, so its keys are reported under data.
  for (const [k, v] of entries(obj.stringData)) {
    for (const m of isConfigMapKey(k)) out.push(invalidCause(keyPath("data", k), k, m));
    total += textLength(v);
  }
  if (total > MAX_SECRET_SIZE) out.push(tooLongCause("data", MAX_SECRET_SIZE));
  return out;
}

function leaseCauses(obj: Obj): FieldCause[] {
  const spec = isObj(obj.spec) ? obj.spec : {};
  const out: FieldCause[] = [];
  const duration = spec.leaseDurationSeconds;
  if (typeof duration === "number" && duration <= 0) out.push(invalidCause("spec.leaseDurationSeconds", duration, "must be greater than 0"));
  const transitions = spec.leaseTransitions;
  if (typeof transitions === "number" && transitions < 0) {
    out.push(invalidCause("spec.leaseTransitions", transitions, "must be greater than or equal to 0"));
  }
  return out;
}

function namespaceCauses(obj: Obj): FieldCause[] {
  const spec = isObj(obj.spec) ? obj.spec : {};
  const out: FieldCause[] = [];
  const finalizers = Array.isArray(spec.finalizers) ? spec.finalizers : [];
  finalizers.forEach((f, i) => {
    if (typeof f !== "string") return;
    const field = `spec.finalizers[${i}]`;
    for (const m of isQualifiedName(f)) out.push(invalidCause(field, f, m));
    if (!f.includes("/") && f !== "kubernetes") out.push(invalidCause(field, f, "name is neither a standard finalizer name nor is it fully qualified"));
  });
  return out;
}

/** An `immutable: true` ConfigMap or Secret keeps its data and stays immutable (`ValidateConfigMapUpdate`, `ValidateSecretUpdate`). */
function immutableCauses(next: Obj, old: Obj, fields: string[]): FieldCause[] {
  if (old.immutable !== true) return [];
  const out: FieldCause[] = [];
  if (next.immutable !== true) out.push(forbiddenCause("immutable", "field is immutable when `immutable` is set"));
  for (const f of fields) {
    if (!jsonEqual(next[f] ?? {}, old[f] ?? {})) out.push(forbiddenCause(f, "field is immutable when `immutable` is set"));
  }
  return out;
}

/**
 * Field causes for a built-in kind's object (`next`), comparing with the
 * stored object `old` on an update. Empty for valid objects and for kinds
 * without rules of their own (custom kinds, Events).
 */
export function validateBuiltin(def: { group: string; plural: string }, next: Obj, old?: Obj): FieldCause[] {
  if (def.group === "coordination.k8s.io" && def.plural === "leases") return leaseCauses(next);
  if (def.group !== "") return [];
  switch (def.plural) {
    case "configmaps":
      return [...(old ? immutableCauses(next, old, ["data", "binaryData"]) : []), ...configMapCauses(next)];
    case "secrets": {
      const out: FieldCause[] = [];
      if (old) {
        if (old.type !== undefined && next.type !== undefined && next.type !== old.type) out.push(invalidCause("type", next.type, "field is immutable"));
        out.push(...immutableCauses(next, old, ["data"]));
        // kube folds stringData into data before this check; any stringData changes data.
        if (old.immutable === true && entries(next.stringData).length > 0 && !out.some((c) => c.field === "data")) {
          out.push(forbiddenCause("data", "field is immutable when `immutable` is set"));
        }
      }
      return [...out, ...secretCauses(next)];
    }
    case "namespaces":
      return namespaceCauses(next);
    default:
      return [];
  }
}
