/**
 * The pure ObjectMeta rules (apiserver/object-meta.ts) and the built-in
 * kinds' rules (apiserver/builtin-validation.ts), table-driven, with the
 * boundary lengths kube uses (63/64, 253/254, 256 KiB).
 */
import assert from "node:assert/strict";
import { validateBuiltin } from "../../apiserver/builtin-validation.js";
import {
  checkName,
  generateNameFrom,
  isConfigMapKey,
  isDNS1123Label,
  isDNS1123Subdomain,
  isQualifiedName,
  isValidLabelValue,
  nameRuleFor,
  validateAnnotations,
  validateLabels,
  validateObjectMeta,
  validateObjectMetaUpdate,
  type FieldCause,
} from "../../apiserver/object-meta.js";

const label63 = "a".repeat(63);
const label64 = "a".repeat(64);
// 253 characters of dotted labels: 4 × 63 + 3 dots = 255 is too long, so 3 × 63 + 62 + 3 dots.
const subdomain253 = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
const subdomain254 = `${subdomain253.slice(0, -1)}dd`;

function fields(causes: FieldCause[]): string[] {
  return causes.map((c) => `${c.reason} ${c.field}`);
}

describe("ObjectMeta rules", () => {
  it("has 253- and 254-character subdomain fixtures", () => {
    assert.equal(subdomain253.length, 253);
    assert.equal(subdomain254.length, 254);
  });

  describe("IsDNS1123Label", () => {
    const cases: Array<{ name: string; value: string; valid: boolean; message?: RegExp }> = [
      { name: "a single character is a label", value: "a", valid: true },
      { name: "digits and dashes inside are fine", value: "0-a-9", valid: true },
      { name: "63 characters are allowed", value: label63, valid: true },
      { name: "64 characters are too long", value: label64, valid: false, message: /must be no more than 63 characters/ },
      { name: "a dot is not allowed", value: "a.b", valid: false, message: /^must not contain dots$/ },
      { name: "uppercase is not allowed", value: "Abc", valid: false, message: /lowercase RFC 1123 label/ },
      { name: "a leading dash is not allowed", value: "-a", valid: false },
      { name: "a trailing dash is not allowed", value: "a-", valid: false },
      { name: "empty is not a label", value: "", valid: false },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const errs = isDNS1123Label(c.value);
        assert.equal(errs.length === 0, c.valid, errs.join("; "));
        if (c.message) assert.ok(errs.some((e) => c.message?.test(e)), errs.join("; "));
      });
    }
  });

  describe("IsDNS1123Subdomain", () => {
    const cases: Array<{ name: string; value: string; valid: boolean; message?: RegExp }> = [
      { name: "dotted labels are a subdomain", value: "a.b-c.d", valid: true },
      { name: "253 characters are allowed", value: subdomain253, valid: true },
      { name: "254 characters are too long", value: subdomain254, valid: false, message: /must be no more than 253 characters/ },
      { name: "an empty label between dots is not allowed", value: "a..b", valid: false },
      { name: "a trailing dot is not allowed", value: "a.", valid: false },
      { name: "an underscore is not allowed", value: "a_b", valid: false, message: /lowercase RFC 1123 subdomain/ },
      { name: "uppercase is not allowed", value: "A.b", valid: false },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const errs = isDNS1123Subdomain(c.value);
        assert.equal(errs.length === 0, c.valid, errs.join("; "));
        if (c.message) assert.ok(errs.some((e) => c.message?.test(e)), errs.join("; "));
      });
    }
  });

  describe("IsQualifiedName (label, annotation and finalizer keys)", () => {
    const cases: Array<{ name: string; value: string; valid: boolean; message?: RegExp }> = [
      { name: "a plain name", value: "MyName", valid: true },
      { name: "dots, dashes and underscores inside", value: "my.name_x-1", valid: true },
      { name: "a subdomain prefix", value: "example.com/MyName", valid: true },
      { name: "a 63-character name part", value: `example.com/${label63}`, valid: true },
      { name: "a 64-character name part", value: `example.com/${label64}`, valid: false, message: /^name part must be no more than 63 characters$/ },
      { name: "a 253-character prefix", value: `${subdomain253}/n`, valid: true },
      { name: "a 254-character prefix", value: `${subdomain254}/n`, valid: false, message: /^prefix part must be no more than 253 characters$/ },
      { name: "an empty prefix", value: "/name", valid: false, message: /^prefix part must be non-empty$/ },
      { name: "an uppercase prefix", value: "Example.com/name", valid: false, message: /^prefix part a lowercase RFC 1123 subdomain/ },
      { name: "an empty name", value: "example.com/", valid: false, message: /^name part must be non-empty$/ },
      { name: "two slashes", value: "a/b/c", valid: false, message: /^a qualified name must consist of/ },
      { name: "a space", value: "bad key", valid: false, message: /^name part must consist of alphanumeric characters/ },
      { name: "a leading dash", value: "-a", valid: false },
      { name: "a trailing dot", value: "a.", valid: false },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const errs = isQualifiedName(c.value);
        assert.equal(errs.length === 0, c.valid, errs.join("; "));
        if (c.message) assert.ok(errs.some((e) => c.message?.test(e)), errs.join("; "));
      });
    }
  });

  describe("IsValidLabelValue", () => {
    const cases: Array<{ name: string; value: string; valid: boolean }> = [
      { name: "empty is a valid value", value: "", valid: true },
      { name: "63 characters are allowed", value: label63, valid: true },
      { name: "64 characters are too long", value: label64, valid: false },
      { name: "mixed case with dots, dashes and underscores", value: "My_value.1-x", valid: true },
      { name: "a slash is not allowed", value: "a/b", valid: false },
      { name: "a leading underscore is not allowed", value: "_a", valid: false },
    ];
    for (const c of cases) {
      it(c.name, () => assert.equal(isValidLabelValue(c.value).length === 0, c.valid));
    }
  });

  describe("IsConfigMapKey", () => {
    const cases: Array<{ name: string; value: string; valid: boolean; message?: RegExp }> = [
      { name: "a file name", value: "config.yaml", valid: true },
      { name: "uppercase and underscores", value: "KEY_NAME", valid: true },
      { name: "a dot file", value: ".env", valid: true },
      { name: "253 characters", value: "k".repeat(253), valid: true },
      { name: "254 characters", value: "k".repeat(254), valid: false, message: /must be no more than 253 characters/ },
      { name: "'.'", value: ".", valid: false, message: /^must not be '\.'$/ },
      { name: "'..'", value: "..", valid: false, message: /^must not be '\.\.'$/ },
      { name: "a '..' prefix", value: "..data", valid: false, message: /^must not start with '\.\.'$/ },
      { name: "a slash", value: "a/b", valid: false, message: /a valid config key/ },
      { name: "empty", value: "", valid: false },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const errs = isConfigMapKey(c.value);
        assert.equal(errs.length === 0, c.valid, errs.join("; "));
        if (c.message) assert.ok(errs.some((e) => c.message?.test(e)), errs.join("; "));
      });
    }
  });

  describe("names per kind", () => {
    it("uses a label for namespaces, path segments for core events and subdomains elsewhere", () => {
      assert.equal(nameRuleFor({ group: "", plural: "namespaces" }), "dns1123Label");
      assert.equal(nameRuleFor({ group: "", plural: "events" }), "pathSegment");
      for (const plural of ["secrets", "configmaps"]) assert.equal(nameRuleFor({ group: "", plural }), "dns1123Subdomain");
      assert.equal(nameRuleFor({ group: "coordination.k8s.io", plural: "leases" }), "dns1123Subdomain");
      assert.equal(nameRuleFor({ group: "accessfabric.io", plural: "nodegroups" }), "dns1123Subdomain");
    });

    it("accepts a generateName prefix ending in a dash, and refuses one that is invalid otherwise", () => {
      assert.deepEqual(checkName("dns1123Subdomain", "web-", true), []);
      assert.deepEqual(checkName("dns1123Label", "ns-", true), []);
      assert.notDeepEqual(checkName("dns1123Subdomain", "Web-", true), []);
    });

    it("accepts any path segment for events but '.', '..', '/' and '%'", () => {
      assert.deepEqual(checkName("pathSegment", "Mixed_Case.x"), []);
      assert.deepEqual(checkName("pathSegment", ".."), ["may not be '..'"]);
      assert.deepEqual(checkName("pathSegment", "a/b%"), ["may not contain '/'", "may not contain '%'"]);
    });

    it("cuts a long generateName to 58 characters before the 5-character suffix", () => {
      const name = generateNameFrom("p".repeat(100), () => 0);
      assert.equal(name, `${"p".repeat(58)}bbbbb`);
      assert.deepEqual(isDNS1123Label(name), []);
      assert.equal(generateNameFrom("web-", () => 1), "web-ccccc");
    });
  });

  describe("validateObjectMeta", () => {
    const ns = { namespaced: true, nameRule: "dns1123Subdomain" as const };
    const cluster = { namespaced: false, nameRule: "dns1123Subdomain" as const };
    const cases: Array<{ name: string; meta: Record<string, unknown>; rules: typeof ns | typeof cluster; want: string[] }> = [
      { name: "a valid namespaced object has no causes", meta: { name: "a", namespace: "ns", labels: { "example.com/k": "v" } }, rules: ns, want: [] },
      { name: "a name is required", meta: { namespace: "ns" }, rules: ns, want: ["FieldValueRequired metadata.name"] },
      { name: "a namespace is required on a namespaced kind", meta: { name: "a" }, rules: ns, want: ["FieldValueRequired metadata.namespace"] },
      { name: "a namespace is forbidden on a cluster-scoped kind", meta: { name: "a", namespace: "ns" }, rules: cluster, want: ["FieldValueForbidden metadata.namespace"] },
      { name: "the namespace must be a label", meta: { name: "a", namespace: "a.b" }, rules: ns, want: ["FieldValueInvalid metadata.namespace"] },
      { name: "an invalid generateName hides the generated name's error", meta: { name: "Bad-x1", generateName: "Bad-" }, rules: cluster, want: ["FieldValueInvalid metadata.generateName"] },
      { name: "a negative generation is invalid", meta: { name: "a", generation: -1 }, rules: cluster, want: ["FieldValueInvalid metadata.generation"] },
      {
        name: "bad label key and value are both reported on metadata.labels",
        meta: { name: "a", labels: { "bad key": label64 } },
        rules: cluster,
        want: ["FieldValueInvalid metadata.labels", "FieldValueInvalid metadata.labels"],
      },
      { name: "finalizers are qualified names", meta: { name: "a", finalizers: ["ok/x", "not ok"] }, rules: cluster, want: ["FieldValueInvalid metadata.finalizers"] },
      {
        name: "orphan and foregroundDeletion cannot both be set",
        meta: { name: "a", finalizers: ["orphan", "foregroundDeletion"] },
        rules: cluster,
        want: ["FieldValueInvalid metadata.finalizers"],
      },
      {
        name: "an ownerReference needs kind, name and uid",
        meta: { name: "a", ownerReferences: [{ apiVersion: "v1", kind: "", name: "", uid: "" }] },
        rules: cluster,
        want: ["FieldValueInvalid metadata.ownerReferences.kind", "FieldValueInvalid metadata.ownerReferences.name", "FieldValueInvalid metadata.ownerReferences.uid"],
      },
      {
        name: "a managedFields entry needs a known operation and fieldsType",
        meta: { name: "a", managedFields: [{ manager: "m", operation: "Bogus", fieldsType: "FieldsV2" }] },
        rules: cluster,
        want: ["FieldValueInvalid metadata.managedFields[0].operation", "FieldValueInvalid metadata.managedFields[0].fieldsType"],
      },
      { name: "values of the wrong type are left to the schema validator", meta: { name: "a", labels: ["x"], finalizers: "x" }, rules: cluster, want: [] },
    ];
    for (const c of cases) {
      it(c.name, () => assert.deepEqual(fields(validateObjectMeta(c.meta, c.rules)), c.want));
    }

    it("formats causes like kube's field errors", () => {
      assert.deepEqual(validateLabels({ k: "-x" }, "metadata.labels"), [
        {
          reason: "FieldValueInvalid",
          field: "metadata.labels",
          message:
            "Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue' or 'my_value' or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        },
      ]);
    });

    it("allows annotations of exactly 256 KiB and refuses one byte more", () => {
      const limit = 256 * 1024;
      assert.deepEqual(validateAnnotations({ k: "v".repeat(limit - 1) }, "metadata.annotations"), []);
      assert.deepEqual(validateAnnotations({ k: "v".repeat(limit) }, "metadata.annotations"), [
        { reason: "FieldValueTooLong", field: "metadata.annotations", message: "Too long: may not be more than 262144 bytes" },
      ]);
    });

    it("checks annotation keys case-insensitively, as kube does", () => {
      assert.deepEqual(validateAnnotations({ "Example.COM/Key": "v" }, "metadata.annotations"), []);
    });
  });

  describe("validateObjectMetaUpdate", () => {
    const old = { name: "a", namespace: "ns", uid: "u1", creationTimestamp: "2024-01-01T00:00:00Z", generation: 3 };
    const cases: Array<{ name: string; next: Record<string, unknown>; old: Record<string, unknown>; want: string[] }> = [
      { name: "the same metadata is fine", next: { ...old }, old, want: [] },
      { name: "absent server fields are kept, not refused", next: { name: "a" }, old, want: [] },
      { name: "creationTimestamp and generation are restored, not refused", next: { ...old, creationTimestamp: "2030-01-01T00:00:00Z", generation: 1 }, old, want: [] },
      { name: "a different uid is immutable", next: { ...old, uid: "u2" }, old, want: ["FieldValueInvalid metadata.uid"] },
      { name: "a different name is immutable", next: { ...old, name: "b" }, old, want: ["FieldValueInvalid metadata.name"] },
      { name: "a different namespace is immutable", next: { ...old, namespace: "other" }, old, want: ["FieldValueInvalid metadata.namespace"] },
      { name: "a client deletionTimestamp is immutable", next: { ...old, deletionTimestamp: "2030-01-01T00:00:00Z" }, old, want: ["FieldValueInvalid metadata.deletionTimestamp"] },
      { name: "a client grace period is immutable", next: { ...old, deletionGracePeriodSeconds: 5 }, old, want: ["FieldValueInvalid metadata.deletionGracePeriodSeconds"] },
      {
        name: "the stored deletion fields are kept when the client drops them",
        next: { ...old },
        old: { ...old, deletionTimestamp: "2024-02-01T00:00:00Z", deletionGracePeriodSeconds: 0 },
        want: [],
      },
      {
        name: "no finalizer may be added once deletion started",
        next: { ...old, finalizers: ["a/x", "b/y"] },
        old: { ...old, deletionTimestamp: "2024-02-01T00:00:00Z", finalizers: ["a/x"] },
        want: ["FieldValueForbidden metadata.finalizers"],
      },
    ];
    for (const c of cases) {
      it(c.name, () => assert.deepEqual(fields(validateObjectMetaUpdate(c.next, c.old)), c.want));
    }
  });
});

describe("built-in kind rules", () => {
  const cm = { group: "", plural: "configmaps" };
  const secret = { group: "", plural: "secrets" };
  const cases: Array<{ name: string; def: { group: string; plural: string }; obj: Record<string, unknown>; old?: Record<string, unknown>; want: string[] }> = [
    { name: "a ConfigMap with valid keys is fine", def: cm, obj: { data: { "a.yaml": "x" }, binaryData: { b: "eA==" } }, want: [] },
    { name: "ConfigMap keys are config keys", def: cm, obj: { data: { "a/b": "x" }, binaryData: { "..": "eA==" } }, want: ["FieldValueInvalid data[a/b]", "FieldValueInvalid binaryData[..]"] },
    { name: "a ConfigMap key cannot be in data and binaryData", def: cm, obj: { data: { k: "x" }, binaryData: { k: "eA==" } }, want: ["FieldValueInvalid data[k]", "FieldValueInvalid binaryData[k]"] },
    { name: "a ConfigMap payload over 1 MiB is too long", def: cm, obj: { data: { k: "x".repeat(1024 * 1024 + 1) } }, want: ["FieldValueTooLong "] },
    { name: "an immutable ConfigMap keeps its data", def: cm, obj: { immutable: true, data: { k: "2" } }, old: { immutable: true, data: { k: "1" } }, want: ["FieldValueForbidden data"] },
    { name: "an immutable ConfigMap stays immutable", def: cm, obj: { data: { k: "1" } }, old: { immutable: true, data: { k: "1" } }, want: ["FieldValueForbidden immutable"] },
    { name: "Secret stringData keys are checked as data keys", def: secret, obj: { stringData: { "a b": "x" } }, want: ["FieldValueInvalid data[a b]"] },
    { name: "an immutable Secret refuses new stringData", def: secret, obj: { immutable: true, data: { k: "MQ==" }, stringData: { k: "2" } }, old: { immutable: true, data: { k: "MQ==" } }, want: ["FieldValueForbidden data"] },
    { name: "a Secret keeps its type", def: secret, obj: { type: "Opaque" }, old: { type: "kubernetes.io/tls" }, want: ["FieldValueInvalid type"] },
    { name: "a Lease duration must be positive", def: { group: "coordination.k8s.io", plural: "leases" }, obj: { spec: { leaseDurationSeconds: 0, leaseTransitions: -1 } }, want: ["FieldValueInvalid spec.leaseDurationSeconds", "FieldValueInvalid spec.leaseTransitions"] },
    { name: "Namespace finalizers are standard or qualified", def: { group: "", plural: "namespaces" }, obj: { spec: { finalizers: ["kubernetes", "example.com/x", "custom"] } }, want: ["FieldValueInvalid spec.finalizers[2]"] },
    { name: "custom kinds have no built-in rules", def: { group: "accessfabric.io", plural: "nodegroups" }, obj: { data: { "a/b": 1 } }, want: [] },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(fields(validateBuiltin(c.def, c.obj, c.old)), c.want));
  }
});
