import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse, parseAllDocuments } from "yaml";
import { generateAll } from "../../hack/generate.js";
import type { JoinToken } from "../../lib/api/types.generated.js";
import { loadCatalog, repositoryRoot } from "../../lib/api/schemas.js";
import { applyDefaults, isKnownKind, unknownFields, UnknownKindError, validate } from "../../apiserver/validation.js";

const root = repositoryRoot();
const G = "accessfabric.io";
const V = "v1alpha1";

type Json = { [key: string]: unknown };

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function gvk(obj: Json): { group: string; version: string; kind: string } {
  const apiVersion = String(obj.apiVersion);
  const slash = apiVersion.indexOf("/");
  return {
    group: slash < 0 ? "" : apiVersion.slice(0, slash),
    version: slash < 0 ? apiVersion : apiVersion.slice(slash + 1),
    kind: String(obj.kind),
  };
}

/** The examples, working kinds first, then the planned ones (manifests/examples/planned/). */
function examples(): Array<{ file: string; obj: Json }> {
  const out: Array<{ file: string; obj: Json }> = [];
  for (const sub of ["manifests/examples", "manifests/examples/planned"]) {
    const dir = join(root, sub);
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
      for (const doc of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
        const obj: unknown = doc.toJSON();
        if (isObject(obj)) out.push({ file: join(sub, file).replace("manifests/examples/", ""), obj });
      }
    }
  }
  return out;
}

/** A JoinToken builder with valid defaults; override per test. */
function joinToken(spec: Json = {}): Json {
  return { apiVersion: `${G}/${V}`, kind: "JoinToken", metadata: { name: "t" }, spec: { cluster: "demo", ...spec } };
}

describe("schemas", () => {
  describe("examples", () => {
    it("contain at least one object of every fabric kind", () => {
      const kinds = new Set(examples().map((e) => String(e.obj.kind)));
      for (const res of loadCatalog().resources.filter((r) => r.fabric)) assert.ok(kinds.has(res.kind), `no example of ${res.kind}`);
    });

    it("create the namespace before the objects that live in it", () => {
      const all = examples();
      const nsIndex = all.findIndex((e) => e.obj.kind === "Namespace");
      const firstNamespaced = all.findIndex((e) => isObject(e.obj.metadata) && typeof e.obj.metadata.namespace === "string");
      assert.ok(nsIndex >= 0 && nsIndex < firstNamespaced);
    });

    for (const { file, obj } of examples()) {
      const name = isObject(obj.metadata) ? String(obj.metadata.name) : "?";
      it(`${file} ${String(obj.kind)}/${name} validates and has no unknown fields`, () => {
        const { group, version, kind } = gvk(obj);
        assert.deepEqual(validate(group, version, kind, obj), []);
        assert.deepEqual(unknownFields(group, version, kind, obj), []);
        assert.deepEqual(validate(group, version, kind, applyDefaults(group, version, kind, obj)), []);
      });
    }
  });

  describe("validate", () => {
    it("reports invalid values with kube field paths", () => {
      const causes = validate(G, V, "JoinToken", joinToken({ maxUses: 0, allowedRoles: ["Entry_Node"], ttl: "half an hour" }));
      const fields = causes.map((c) => `${c.reason} ${c.field}`);
      assert.ok(fields.includes("FieldValueInvalid spec.maxUses"), fields.join("; "));
      assert.ok(fields.includes("FieldValueInvalid spec.allowedRoles[0]"), fields.join("; "));
      assert.ok(fields.includes("FieldValueInvalid spec.ttl"), fields.join("; "));
      const maxUses = causes.find((c) => c.field === "spec.maxUses");
      assert.equal(maxUses?.message, "Invalid value: 0: spec.maxUses in body should be greater than or equal to 1");
    });

    it("reports missing required fields", () => {
      const causes = validate(G, V, "JoinRequest", { apiVersion: `${G}/${V}`, kind: "JoinRequest", metadata: { name: "r" }, spec: { cluster: "demo" } });
      const required = causes.filter((c) => c.reason === "FieldValueRequired").map((c) => c.field).sort();
      assert.deepEqual(required, ["spec.csr", "spec.hostFingerprint", "spec.nodeName", "spec.tokenRef"]);
      assert.ok(causes.every((c) => c.reason !== "FieldValueRequired" || c.message === "Required value"));
    });

    it("reports unsupported enum values and wrong types", () => {
      const causes = validate(G, V, "JoinToken", joinToken({ autoApprove: "yes" }));
      assert.deepEqual(causes.map((c) => [c.reason, c.field]), [["FieldValueTypeInvalid", "spec.autoApprove"]]);
      const node = { apiVersion: `${G}/${V}`, kind: "FabricNode", metadata: { name: "n" }, spec: { cluster: "demo", hostFingerprint: `sha256:${"a".repeat(64)}`, membership: "Paused" } };
      const [cause] = validate(G, V, "FabricNode", node);
      assert.equal(cause?.reason, "FieldValueNotSupported");
      assert.equal(cause?.field, "spec.membership");
      assert.match(cause?.message ?? "", /supported values: "Active", "Disabled", "Revoked"/);
    });

    it("reports duplicate set items and duplicate condition types", () => {
      const obj = joinToken({ allowedRoles: ["entry-node", "entry-node"] });
      obj.status = {
        conditions: [
          { type: "Ready", status: "True", reason: "Valid", message: "", lastTransitionTime: "2025-01-01T00:00:00Z" },
          { type: "Ready", status: "Maybe", reason: "Valid", message: "", lastTransitionTime: "2025-01-01T00:00:00Z" },
        ],
      };
      const fields = validate(G, V, "JoinToken", obj).map((c) => `${c.reason} ${c.field}`);
      assert.deepEqual(fields.sort(), [
        "FieldValueDuplicate spec.allowedRoles[1]",
        "FieldValueDuplicate status.conditions[1]",
        "FieldValueNotSupported status.conditions[1].status",
      ]);
    });

    it("accepts an int or a percentage for int-or-string fields, nothing else", () => {
      const channel = (maxUnavailable: unknown) => ({ apiVersion: `${G}/${V}`, kind: "ReleaseChannel", metadata: { name: "c" }, spec: { cluster: "demo", component: "x", current: "1.0.0", maxUnavailable } });
      assert.deepEqual(validate(G, V, "ReleaseChannel", channel(2)), []);
      assert.deepEqual(validate(G, V, "ReleaseChannel", channel("25%")), []);
      assert.deepEqual(validate(G, V, "ReleaseChannel", channel(true)).map((c) => c.field), ["spec.maxUnavailable"]);
    });

    it("accepts null metadata fields written by some clients", () => {
      const obj = joinToken();
      obj.metadata = { name: "t", creationTimestamp: null };
      assert.deepEqual(validate(G, V, "JoinToken", obj), []);
    });

    it("validates the built-in kinds leniently", () => {
      assert.deepEqual(validate("", "v1", "Namespace", { apiVersion: "v1", kind: "Namespace", metadata: { name: "org-acme" } }), []);
      assert.deepEqual(validate("", "v1", "ConfigMap", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "c", namespace: "n" }, data: { a: "b" } }), []);
      assert.deepEqual(
        validate("", "v1", "Event", { apiVersion: "v1", kind: "Event", metadata: { name: "e", namespace: "n" }, involvedObject: { kind: "JoinRequest", name: "r" }, reason: "Approved" }),
        [],
      );
      const lease = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: "l", namespace: "n" }, spec: { holderIdentity: "a", leaseDurationSeconds: "15" } };
      assert.deepEqual(validate("coordination.k8s.io", "v1", "Lease", lease).map((c) => [c.reason, c.field]), [["FieldValueTypeInvalid", "spec.leaseDurationSeconds"]]);
      const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "s", namespace: "n" }, data: { token: "not base64!" } };
      assert.deepEqual(validate("", "v1", "Secret", secret).map((c) => c.field), ["data.token"]);
    });

    it("throws UnknownKindError for kinds it does not serve", () => {
      assert.equal(isKnownKind(G, V, "Pod"), false);
      assert.throws(() => validate(G, V, "Pod", {}), UnknownKindError);
    });
  });

  describe("unknownFields", () => {
    it("finds unknown nested fields and unknown metadata fields", () => {
      const obj = {
        apiVersion: `${G}/${V}`,
        kind: "ServiceWorkload",
        metadata: { name: "w", labels: { any: "label" }, bogus: true },
        spec: { cluster: "demo", role: "entry-node", healthProbe: { http: { port: 80, verb: "GET" } }, env: [{ name: "A", value: "1", secret: true }] },
        extra: 1,
      };
      assert.deepEqual(unknownFields(G, V, "ServiceWorkload", obj), ["metadata.bogus", "spec.healthProbe.http.verb", "spec.env[0].secret", "extra"]);
    });

    it("allows anything under x-kubernetes-preserve-unknown-fields and maps", () => {
      const obj = {
        apiVersion: `${G}/${V}`,
        kind: "JoinRequest",
        metadata: { name: "r", annotations: { "a/b": "c" } },
        spec: { facts: { os: "linux", nested: { deep: [1, 2] } }, nodeSelector: undefined },
      };
      assert.deepEqual(unknownFields(G, V, "JoinRequest", obj), ["spec.nodeSelector"]);
    });
  });

  describe("applyDefaults", () => {
    it("applies top-level and nested defaults without mutating the input", () => {
      const input: JoinToken = { apiVersion: `${G}/${V}`, kind: "JoinToken", metadata: { name: "t" }, spec: { cluster: "demo", maxUses: 5 } };
      const before = JSON.stringify(input);
      const out = applyDefaults(G, V, "JoinToken", input);
      assert.equal(JSON.stringify(input), before);
      assert.equal(out.spec.ttl, "30m");
      assert.equal(out.spec.maxUses, 5);
      assert.equal(out.spec.autoApprove, false);
      assert.equal(out.spec.revoked, false);
      assert.equal(out.spec.allowedRoles, undefined);
    });

    it("defaults objects that default to {} and then their own fields", () => {
      const out = applyDefaults(G, V, "FabricCluster", { apiVersion: `${G}/${V}`, kind: "FabricCluster", metadata: { name: "c" }, spec: { peerPolicy: { standard: { max: 7 } } } });
      const spec = (out as { spec: Json }).spec;
      assert.deepEqual(spec.enrollmentPolicy, { approval: "Manual", paused: false, maxTokenTTL: "24h" });
      assert.deepEqual(spec.peerPolicy, { standard: { max: 7, min: 3 }, thin: { min: 1, max: 3 }, relay: { min: 8, max: 20 }, hysteresisPercent: 20 });
      assert.equal(spec.snapshotLifetime, "24h");
    });

    it("defaults inside list items", () => {
      const out = applyDefaults(G, V, "VPNConnection", {
        apiVersion: `${G}/${V}`,
        kind: "VPNConnection",
        metadata: { name: "v", namespace: "org-acme" },
        spec: { cluster: "demo", allowedNodes: ["a"], routePolicies: [{ name: "lan", destination: "10.0.0.0/8" }] },
      });
      const spec = (out as { spec: Json }).spec;
      assert.deepEqual(spec.routePolicies, [{ name: "lan", destination: "10.0.0.0/8", action: "Route", metric: 100 }]);
      assert.equal(spec.enabled, true);
      assert.equal(spec.mode, "Connector");
    });
  });

  describe("generated files", () => {
    const generated = generateAll();

    it("are deterministic and match the files in the repository (run `make generate`)", () => {
      const again = generateAll();
      assert.deepEqual([...again.keys()], [...generated.keys()]);
      for (const [path, content] of generated) {
        assert.equal(again.get(path), content, `${path} differs between two runs`);
        assert.equal(readFileSync(join(root, path), "utf8"), content, `${path} is out of date`);
      }
    });

    it("each name their source (except the flat OpenAPI index the server iterates)", () => {
      for (const [path, content] of generated) {
        if (path.endsWith("openapi-v3/index.json")) continue;
        assert.match(content.slice(0, 600), /generated by hack\/generate\.ts from schemas\//i, path);
      }
    });

    it("CRDs are structural and described", () => {
      const crds = [...generated.entries()].filter(([p]) => p.startsWith("crds/"));
      assert.equal(crds.length, loadCatalog().resources.filter((r) => r.fabric).length);
      for (const [path, content] of crds) {
        const crd: unknown = parse(content);
        assert.ok(isObject(crd) && isObject(crd.spec) && Array.isArray(crd.spec.versions));
        const version: unknown = crd.spec.versions[0];
        assert.ok(isObject(version) && isObject(version.schema) && isObject(version.schema.openAPIV3Schema));
        assert.deepEqual(version.subresources, { status: {} });
        assert.equal(version.served, true);
        assert.equal(version.storage, true);
        assert.deepEqual((crd.spec.names as Json).categories, ["fabric"]);
        const rootSchema = version.schema.openAPIV3Schema;
        assert.deepEqual((rootSchema.properties as Json).metadata, { type: "object" });
        checkStructural(rootSchema, `${path}:openAPIV3Schema`, true);
      }
    });

    it("OpenAPI v3 documents let kubectl explain and validate server-side", () => {
      const index: unknown = JSON.parse(generated.get("apiserver/generated/openapi-v3/index.json") ?? "null");
      assert.ok(isObject(index));
      assert.deepEqual(Object.keys(index).sort(), ["api/v1", "apis/accessfabric.io/v1alpha1", "apis/coordination.k8s.io/v1"]);
      for (const [key, file] of Object.entries(index)) {
        assert.equal(typeof file, "string", key);
        assert.ok(generated.has(`apiserver/generated/openapi-v3/${String(file)}`), key);
      }
      const doc: unknown = JSON.parse(generated.get("apiserver/generated/openapi-v3/apis__accessfabric.io__v1alpha1.json") ?? "null");
      assert.ok(isObject(doc) && isObject(doc.components) && isObject(doc.components.schemas) && isObject(doc.paths));
      const schemas = doc.components.schemas;
      for (const res of loadCatalog().resources.filter((r) => r.fabric)) {
        const schema = schemas[`io.accessfabric.v1alpha1.${res.kind}`];
        assert.ok(isObject(schema), res.kind);
        assert.deepEqual(schema["x-kubernetes-group-version-kind"], [{ group: G, kind: res.kind, version: V }]);
        assert.ok(isObject(schemas[`io.accessfabric.v1alpha1.${res.listKind}`]));
        const base = res.scope === "Namespaced" ? `/apis/${G}/${V}/namespaces/{namespace}/${res.plural}` : `/apis/${G}/${V}/${res.plural}`;
        for (const path of [`${base}/{name}`, `${base}/{name}/status`]) {
          const item: unknown = doc.paths[path];
          assert.ok(isObject(item) && isObject(item.patch), path);
          assert.deepEqual(item.patch["x-kubernetes-group-version-kind"], { group: G, kind: res.kind, version: V });
          const params = item.patch.parameters as Json[];
          assert.ok(params.some((p) => p.name === "fieldValidation" && p.in === "query"), path);
          const body = item.patch.requestBody as { content: Json };
          assert.deepEqual(Object.keys(body.content).sort(), [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
          ]);
        }
      }
      const core: unknown = JSON.parse(generated.get("apiserver/generated/openapi-v3/api__v1.json") ?? "null");
      assert.ok(isObject(core) && isObject(core.paths));
      const nsItem: unknown = core.paths["/api/v1/namespaces/{name}"];
      assert.ok(isObject(nsItem) && isObject(nsItem.patch) && isObject(nsItem.patch.requestBody));
      assert.ok("application/strategic-merge-patch+json" in (nsItem.patch.requestBody.content as Json));
      const meta = schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
      assert.ok(isObject(meta));
      assert.ok(JSON.stringify(doc).includes('"$ref":"#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"'));
      assert.ok(!JSON.stringify(doc).includes("#/definitions/"));
    });

    it("the Swagger 2.0 document covers every kind", () => {
      const doc: unknown = JSON.parse(generated.get("apiserver/generated/openapi-v2.json") ?? "null");
      assert.ok(isObject(doc) && isObject(doc.definitions) && isObject(doc.paths));
      assert.equal(doc.swagger, "2.0");
      for (const res of loadCatalog().resources) {
        const def: unknown = doc.definitions[res.definitionName];
        assert.ok(isObject(def), res.kind);
        assert.deepEqual(def["x-kubernetes-group-version-kind"], [{ group: res.group, kind: res.kind, version: res.version }]);
      }
      const patch = (doc.paths["/apis/accessfabric.io/v1alpha1/jointokens/{name}"] as Json).patch as Json;
      assert.ok((patch.consumes as string[]).includes("application/merge-patch+json"));
      assert.ok((patch.parameters as Json[]).some((p) => p.name === "fieldValidation"));
      assert.ok(!JSON.stringify(doc).includes("anyOf"));
    });
  });
});

/** Asserts kube's structural-schema rules on a CRD schema node. */
function checkStructural(node: Json, path: string, described: boolean): void {
  const intOrString = node["x-kubernetes-int-or-string"] === true;
  const preserve = node["x-kubernetes-preserve-unknown-fields"] === true;
  assert.ok(typeof node.type === "string" || intOrString || preserve, `${path}: schema node without type`);
  if (described) assert.ok(typeof node.description === "string" && node.description !== "", `${path}: no description`);
  if (intOrString) {
    assert.deepEqual(node.anyOf, [{ type: "integer" }, { type: "string" }], `${path}: int-or-string must list exactly integer and string`);
    assert.equal(node.type, undefined, `${path}: int-or-string must not have a type`);
  } else {
    assert.equal(node.anyOf, undefined, `${path}: anyOf is only allowed for int-or-string`);
  }
  assert.ok(node.$ref === undefined, `${path}: $ref is not allowed in a CRD`);
  assert.ok(!(isObject(node.properties) && node.additionalProperties !== undefined), `${path}: properties and additionalProperties together`);
  if (isObject(node.properties)) {
    const required = Array.isArray(node.required) ? node.required : [];
    for (const r of required) assert.ok(r in node.properties, `${path}: required field ${String(r)} is not a property`);
    for (const [k, v] of Object.entries(node.properties)) {
      assert.ok(isObject(v), `${path}.${k}`);
      // ObjectMeta is left to the server, as in kube.
      if (path.endsWith("openAPIV3Schema") && k === "metadata") continue;
      checkStructural(v, `${path}.${k}`, true);
    }
  }
  if (isObject(node.additionalProperties)) checkStructural(node.additionalProperties, `${path}[*]`, false);
  if (node.type === "array") {
    assert.ok(isObject(node.items), `${path}: array without items`);
    checkStructural(node.items, `${path}[]`, false);
    if (node["x-kubernetes-list-type"] === "map") {
      const keys = node["x-kubernetes-list-map-keys"];
      assert.ok(Array.isArray(keys) && keys.length > 0, `${path}: list-type map without keys`);
      const items = node.items;
      const required = Array.isArray(items.required) ? items.required : [];
      for (const k of keys) {
        const prop = isObject(items.properties) ? items.properties[String(k)] : undefined;
        assert.ok(required.includes(k) || (isObject(prop) && prop.default !== undefined), `${path}: map key ${String(k)} must be required or defaulted`);
      }
    }
    if (node["x-kubernetes-list-type"] === "set") {
      assert.ok(["string", "integer", "number", "boolean"].includes(String(node.items.type)), `${path}: set items must be scalars`);
    }
  }
}
