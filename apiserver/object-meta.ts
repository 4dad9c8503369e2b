/**
 * ObjectMeta validation as apimachinery does it on every write
 * (`ValidateObjectMetaAccessor`, `ValidateObjectMetaAccessorUpdate`), with
 * the string rules it is built from (`IsDNS1123Label`, `IsDNS1123Subdomain`,
 * `IsQualifiedName`, `IsValidLabelValue`, `IsConfigMapKey`,
 * `ValidatePathSegmentName`).
 *
 * The checks are pure: they take plain JSON and return field causes shaped
 * like `metav1.StatusCause`, with kube's field paths and messages, so a
 * refusal reads the same as kube-apiserver's. Values of the wrong JSON type
 * are skipped here: the schema validator (validation.ts) reports those.
 */
import { isObj, type Obj } from "./object.js";

/** A field error shaped like `metav1.StatusCause`. */
export interface FieldCause {
  reason: "FieldValueInvalid" | "FieldValueRequired" | "FieldValueForbidden" | "FieldValueTooLong";
  message: string;
  field: string;
}

/** How a kind's names are checked (apimachinery's `ValidateNameFunc`). */
export type NameRule = "dns1123Label" | "dns1123Subdomain" | "pathSegment";

/** Names of one group/plural: namespaces are labels, core v1 events only path segments, everything else subdomains. */
export function nameRuleFor(def: { group: string; plural: string }): NameRule {
  if (def.group === "" && def.plural === "namespaces") return "dns1123Label";
  // kube validates core/v1 Events with the legacy rules only, i.e. the generic path-segment check.
  if (def.group === "" && def.plural === "events") return "pathSegment";
  return "dns1123Subdomain";
}

/** Maximum total size in bytes of an object's annotations (keys plus values). */
export const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;
/** Maximum length of a DNS-1123 label, of a label value and of a qualified name's name part. */
export const DNS1123_LABEL_MAX = 63;
/** Maximum length of a DNS-1123 subdomain and of a config key. */
export const DNS1123_SUBDOMAIN_MAX = 253;
const FIELD_MANAGER_MAX = 128;
const SUBRESOURCE_NAME_MAX = 256;

const dns1123LabelFmt = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const dns1123SubdomainFmt = `${dns1123LabelFmt}(\\.${dns1123LabelFmt})*`;
const qualifiedNameFmt = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const labelValueFmt = `(${qualifiedNameFmt})?`;
const configKeyFmt = "[-._a-zA-Z0-9]+";

const dns1123LabelRe = new RegExp(`^${dns1123LabelFmt}$`);
const dns1123SubdomainRe = new RegExp(`^${dns1123SubdomainFmt}$`);
const qualifiedNameRe = new RegExp(`^${qualifiedNameFmt}$`);
const labelValueRe = new RegExp(`^${labelValueFmt}$`);
const configKeyRe = new RegExp(`^${configKeyFmt}$`);

function maxLenError(n: number): string {
  return `must be no more than ${n} characters`;
}

function regexError(msg: string, fmt: string, ...examples: string[]): string {
  return `${msg} (e.g. ${examples.map((e) => `'${e}'`).join(" or ")}, regex used for validation is '${fmt}')`;
}

/** Length as Go's `len` counts it: UTF-8 bytes. */
function byteLength(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** `IsDNS1123Label`: the problems with `value` as a lowercase RFC 1123 label (empty when valid). */
export function isDNS1123Label(value: string): string[] {
  const errs: string[] = [];
  if (byteLength(value) > DNS1123_LABEL_MAX) errs.push(maxLenError(DNS1123_LABEL_MAX));
  if (!dns1123LabelRe.test(value)) {
    if (dns1123SubdomainRe.test(value)) errs.push("must not contain dots");
    else {
      errs.push(
        regexError(
          "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
          dns1123LabelFmt,
          "my-name",
          "123-abc",
        ),
      );
    }
  }
  return errs;
}

/** `IsDNS1123Subdomain`: the problems with `value` as a lowercase RFC 1123 subdomain (empty when valid). */
export function isDNS1123Subdomain(value: string): string[] {
  const errs: string[] = [];
  if (byteLength(value) > DNS1123_SUBDOMAIN_MAX) errs.push(maxLenError(DNS1123_SUBDOMAIN_MAX));
  if (!dns1123SubdomainRe.test(value)) {
    errs.push(
      regexError(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        dns1123SubdomainFmt,
        "example.com",
      ),
    );
  }
  return errs;
}

const qualifiedNameErr = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/** `IsQualifiedName`: an optional DNS-1123 subdomain prefix and '/', then a name of at most 63 characters. */
export function isQualifiedName(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split("/");
  let name: string;
  if (parts.length === 1) name = parts[0] ?? "";
  else if (parts.length === 2) {
    const prefix = parts[0] ?? "";
    name = parts[1] ?? "";
    if (prefix === "") errs.push("prefix part must be non-empty");
    else errs.push(...isDNS1123Subdomain(prefix).map((m) => `prefix part ${m}`));
  } else {
    return [
      `a qualified name ${regexError(qualifiedNameErr, qualifiedNameFmt, "MyName", "my.name", "123-abc")} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`,
    ];
  }
  if (name === "") errs.push("name part must be non-empty");
  else if (byteLength(name) > DNS1123_LABEL_MAX) errs.push(`name part ${maxLenError(DNS1123_LABEL_MAX)}`);
  if (!qualifiedNameRe.test(name)) errs.push(`name part ${regexError(qualifiedNameErr, qualifiedNameFmt, "MyName", "my.name", "123-abc")}`);
  return errs;
}

/** `IsValidLabelValue`: empty, or at most 63 characters of the qualified-name alphabet. */
export function isValidLabelValue(value: string): string[] {
  const errs: string[] = [];
  if (byteLength(value) > DNS1123_LABEL_MAX) errs.push(maxLenError(DNS1123_LABEL_MAX));
  if (!labelValueRe.test(value)) {
    errs.push(
      regexError(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        labelValueFmt,
        "MyValue",
        "my_value",
        "12345",
      ),
    );
  }
  return errs;
}

/** `IsConfigMapKey`: a key of ConfigMap/Secret data (a file name: no '/', not '.' or '..'). */
export function isConfigMapKey(value: string): string[] {
  const errs: string[] = [];
  if (byteLength(value) > DNS1123_SUBDOMAIN_MAX) errs.push(maxLenError(DNS1123_SUBDOMAIN_MAX));
  if (!configKeyRe.test(value)) {
    errs.push(regexError("a valid config key must consist of alphanumeric characters, '-', '_' or '.'", configKeyFmt, "key.name", "KEY_NAME", "key-name"));
  }
  if (value === ".") errs.push("must not be '.'");
  else if (value === "..") errs.push("must not be '..'");
  else if (value.startsWith("..")) errs.push("must not start with '..'");
  return errs;
}

/** `IsValidPathSegmentName`: what any name must satisfy to be addressable in a URL path. */
export function isValidPathSegmentName(value: string, prefix = false): string[] {
  const errs: string[] = [];
  if (!prefix) {
    if (value === ".") return ["may not be '.'"];
    if (value === "..") return ["may not be '..'"];
  }
  if (value.includes("/")) errs.push("may not contain '/'");
  if (value.includes("%")) errs.push("may not contain '%'");
  return errs;
}

/** A generateName prefix is checked as if a suffix followed: a trailing '-' is fine. */
function maskTrailingDash(name: string): string {
  return name.length > 1 && name.endsWith("-") ? `${name.slice(0, -1)}a` : name;
}

/** Checks a name (or, with `prefix`, a generateName) under a kind's rule. */
export function checkName(rule: NameRule, name: string, prefix = false): string[] {
  switch (rule) {
    case "dns1123Label":
      return isDNS1123Label(prefix ? maskTrailingDash(name) : name);
    case "dns1123Subdomain":
      return isDNS1123Subdomain(prefix ? maskTrailingDash(name) : name);
    case "pathSegment":
      return isValidPathSegmentName(name, prefix);
  }
}

const GENERATED_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
const GENERATED_SUFFIX_LENGTH = 5;

/**
 * A name from a generateName prefix, as kube's `SimpleNameGenerator`: the
 * prefix cut to 58 characters, then five random characters, so a long prefix
 * still yields a name of at most 63.
 */
export function generateNameFrom(prefix: string, random: (n: number) => number = (n) => Math.floor(Math.random() * n)): string {
  const base = prefix.slice(0, DNS1123_LABEL_MAX - GENERATED_SUFFIX_LENGTH);
  let suffix = "";
  for (let i = 0; i < GENERATED_SUFFIX_LENGTH; i++) suffix += GENERATED_SUFFIX_ALPHABET[random(GENERATED_SUFFIX_ALPHABET.length)] ?? "x";
  return base + suffix;
}

/** Formats a bad value the way kube's field errors print it (`%q` for strings). */
function show(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (v === null || v === undefined) return "null";
  const s = JSON.stringify(v);
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

/** `field.Invalid`. */
export function invalidCause(field: string, value: unknown, detail: string): FieldCause {
  return { reason: "FieldValueInvalid", field, message: `Invalid value: ${show(value)}: ${detail}` };
}

/** `field.Required`. */
export function requiredCause(field: string, detail = ""): FieldCause {
  return { reason: "FieldValueRequired", field, message: detail === "" ? "Required value" : `Required value: ${detail}` };
}

/** `field.Forbidden`. */
export function forbiddenCause(field: string, detail: string): FieldCause {
  return { reason: "FieldValueForbidden", field, message: `Forbidden: ${detail}` };
}

/** `field.TooLong`. */
export function tooLongCause(field: string, max: number): FieldCause {
  return { reason: "FieldValueTooLong", field, message: `Too long: may not be more than ${max} bytes` };
}

function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** `ValidateLabels`: qualified-name keys and label values; every cause is on `path` itself, as in kube. */
export function validateLabels(labels: unknown, path: string): FieldCause[] {
  if (!isObj(labels)) return [];
  const out: FieldCause[] = [];
  for (const [k, v] of Object.entries(labels)) {
    for (const m of isQualifiedName(k)) out.push(invalidCause(path, k, m));
    const value = str(v);
    if (value !== undefined) for (const m of isValidLabelValue(value)) out.push(invalidCause(path, value, m));
  }
  return out;
}

/** `ValidateAnnotations`: keys are qualified names (case-insensitive); keys plus values total at most 256 KiB. */
export function validateAnnotations(annotations: unknown, path: string): FieldCause[] {
  if (!isObj(annotations)) return [];
  const out: FieldCause[] = [];
  let total = 0;
  for (const [k, v] of Object.entries(annotations)) {
    for (const m of isQualifiedName(k.toLowerCase())) out.push(invalidCause(path, k, m));
    total += byteLength(k) + byteLength(str(v) ?? "");
  }
  if (total > TOTAL_ANNOTATION_SIZE_LIMIT) out.push(tooLongCause(path, TOTAL_ANNOTATION_SIZE_LIMIT));
  return out;
}

/** `ValidateFinalizers`: each a qualified name; orphan and foregroundDeletion not both. */
export function validateFinalizers(finalizers: unknown, path: string): FieldCause[] {
  if (!Array.isArray(finalizers)) return [];
  const out: FieldCause[] = [];
  for (const f of finalizers) {
    const s = str(f);
    if (s !== undefined) for (const m of isQualifiedName(s)) out.push(invalidCause(path, s, m));
  }
  if (finalizers.includes("orphan") && finalizers.includes("foregroundDeletion")) {
    out.push(invalidCause(path, finalizers, "finalizer orphan and foregroundDeletion cannot be both set"));
  }
  return out;
}

/** `ValidateOwnerReferences`: apiVersion with a version, kind, name and uid present; at most one controller. */
export function validateOwnerReferences(refs: unknown, path: string): FieldCause[] {
  if (!Array.isArray(refs)) return [];
  const out: FieldCause[] = [];
  let firstController = "";
  for (const ref of refs) {
    if (!isObj(ref)) continue;
    const apiVersion = str(ref.apiVersion) ?? "";
    const slash = apiVersion.lastIndexOf("/");
    const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
    if (version === "") out.push(invalidCause(`${path}.apiVersion`, apiVersion, "version must not be empty"));
    if ((str(ref.kind) ?? "") === "") out.push(invalidCause(`${path}.kind`, str(ref.kind) ?? "", "kind must not be empty"));
    if ((str(ref.name) ?? "") === "") out.push(invalidCause(`${path}.name`, str(ref.name) ?? "", "name must not be empty"));
    if ((str(ref.uid) ?? "") === "") out.push(invalidCause(`${path}.uid`, str(ref.uid) ?? "", "uid must not be empty"));
    if (ref.controller === true) {
      const current = `${str(ref.kind) ?? ""}/${str(ref.name) ?? ""}`;
      if (firstController !== "") {
        out.push(
          invalidCause(path, refs, `Only one reference can have Controller set to true. Found "true" in references for ${firstController} and ${current}`),
        );
      } else firstController = current;
    }
  }
  return out;
}

/** `ValidateManagedFields`: operation Apply or Update, fieldsType FieldsV1, a printable manager of at most 128 characters. */
export function validateManagedFields(entries: unknown, path: string): FieldCause[] {
  if (!Array.isArray(entries)) return [];
  const out: FieldCause[] = [];
  entries.forEach((e, i) => {
    if (!isObj(e)) return;
    const p = `${path}[${i}]`;
    if (e.operation !== "Apply" && e.operation !== "Update") out.push(invalidCause(`${p}.operation`, e.operation ?? "", "must be `Apply` or `Update`"));
    const fieldsType = str(e.fieldsType) ?? "";
    if (fieldsType !== "" && fieldsType !== "FieldsV1") out.push(invalidCause(`${p}.fieldsType`, fieldsType, "must be `FieldsV1`"));
    const manager = str(e.manager) ?? "";
    if (manager.length > FIELD_MANAGER_MAX) out.push(tooLongCause(`${p}.manager`, FIELD_MANAGER_MAX));
    [...manager].forEach((ch, at) => {
      if (/[\p{C}]/u.test(ch)) {
        const code = ch.codePointAt(0) ?? 0;
        out.push(invalidCause(`${p}.manager`, manager, `invalid character U+${code.toString(16).toUpperCase().padStart(4, "0")} (at position ${at})`));
      }
    });
    if ((str(e.subresource) ?? "").length > SUBRESOURCE_NAME_MAX) out.push(tooLongCause(`${p}.subresource`, SUBRESOURCE_NAME_MAX));
  });
  return out;
}

/** What `validateObjectMeta` needs to know about the kind. */
export interface MetaRules {
  namespaced: boolean;
  nameRule: NameRule;
}

/**
 * `ValidateObjectMetaAccessor`: name (or generateName) under the kind's rule,
 * namespace required (a DNS-1123 label) on namespaced kinds and forbidden on
 * cluster-scoped ones, a non-negative generation, then labels, annotations,
 * ownerReferences, finalizers and managedFields. Field paths start at `metadata`.
 */
export function validateObjectMeta(metadata: unknown, rules: MetaRules): FieldCause[] {
  const meta: Obj = isObj(metadata) ? metadata : {};
  const out: FieldCause[] = [];
  const generateName = str(meta.generateName) ?? "";
  if (generateName !== "") {
    for (const m of checkName(rules.nameRule, generateName, true)) out.push(invalidCause("metadata.generateName", generateName, m));
  }
  const name = str(meta.name) ?? "";
  if (name === "") out.push(requiredCause("metadata.name", "name or generateName is required"));
  // A name generated from an invalid prefix is invalid for the same reason: report the prefix only.
  else if (out.length === 0) for (const m of checkName(rules.nameRule, name)) out.push(invalidCause("metadata.name", name, m));
  const namespace = str(meta.namespace) ?? "";
  if (rules.namespaced) {
    if (namespace === "") out.push(requiredCause("metadata.namespace"));
    else for (const m of isDNS1123Label(namespace)) out.push(invalidCause("metadata.namespace", namespace, m));
  } else if (namespace !== "") out.push(forbiddenCause("metadata.namespace", "not allowed on this type"));
  if (typeof meta.generation === "number" && meta.generation < 0) {
    out.push(invalidCause("metadata.generation", meta.generation, "must be greater than or equal to 0"));
  }
  out.push(...validateLabels(meta.labels, "metadata.labels"));
  out.push(...validateAnnotations(meta.annotations, "metadata.annotations"));
  out.push(...validateOwnerReferences(meta.ownerReferences, "metadata.ownerReferences"));
  out.push(...validateFinalizers(meta.finalizers, "metadata.finalizers"));
  out.push(...validateManagedFields(meta.managedFields, "metadata.managedFields"));
  return out;
}

function absent(v: unknown): boolean {
  return v === undefined || v === null || v === "";
}

/**
 * `ValidateObjectMetaAccessorUpdate` on what `rest.BeforeUpdate` leaves of
 * the candidate's metadata: kube first copies the stored generation and
 * creationTimestamp, the stored uid when none is given, the stored
 * deletionTimestamp once deletion started and the stored grace period when
 * the candidate drops it, so those are never refused. What remains refused:
 * a different name, namespace or uid, a deletionTimestamp or grace period
 * the server did not set, and finalizers added once deletion started.
 */
export function validateObjectMetaUpdate(next: unknown, old: unknown): FieldCause[] {
  const n: Obj = isObj(next) ? next : {};
  const o: Obj = isObj(old) ? old : {};
  const out: FieldCause[] = [];
  const immutable = (k: string, v: unknown) => out.push(invalidCause(`metadata.${k}`, v, "field is immutable"));
  for (const k of ["name", "namespace", "uid"]) {
    if (!absent(n[k]) && n[k] !== o[k]) immutable(k, n[k]);
  }
  if (absent(o.deletionTimestamp) && !absent(n.deletionTimestamp)) immutable("deletionTimestamp", n.deletionTimestamp);
  const grace = n.deletionGracePeriodSeconds ?? null;
  const oldGrace = o.deletionGracePeriodSeconds ?? null;
  if (!(oldGrace !== null && grace === null) && grace !== oldGrace) immutable("deletionGracePeriodSeconds", grace);
  if (!absent(o.deletionTimestamp)) {
    const before = new Set(Array.isArray(o.finalizers) ? o.finalizers : []);
    const added = (Array.isArray(n.finalizers) ? n.finalizers : []).filter((f) => !before.has(f));
    if (added.length > 0) {
      out.push(forbiddenCause("metadata.finalizers", `no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`));
    }
  }
  return out;
}
