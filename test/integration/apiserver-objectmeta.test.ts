/**
 * ObjectMeta and built-in kind validation on every write, against the real
 * API server: each refusal is a kube-style Status (code, reason,
 * details.causes) and leaves storage as it was; the fields the server owns
 * (uid, deletion fields, a cluster-scoped object's namespace) never come
 * from the client.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import https from "node:https";
import { sharedControlPlane, type TestControlPlane } from "../support/controlplane.js";

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

interface Cause {
  reason?: string;
  message?: string;
  field?: string;
}

const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function call(t: TestControlPlane, method: string, path: string, body?: unknown, contentType = "application/json"): Promise<Reply> {
  const url = new URL(t.cp.api.url);
  const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        ca: t.cp.api.caPem,
        headers: { Authorization: `Bearer ${t.cp.api.adminToken}`, ...(payload === undefined ? {} : { "Content-Type": contentType }) },
      },
      (res) => {
        let data = "";
        res.on("data", (c: Buffer) => (data += c.toString()));
        res.on("end", () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(data) as Record<string, unknown>;
          } catch {
            parsed = { raw: data };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, headers: res.headers });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

function causesOf(r: Reply): Cause[] {
  const details = r.body.details as { causes?: Cause[] } | undefined;
  return details?.causes ?? [];
}

function metaOf(r: Reply): Record<string, unknown> {
  return (r.body.metadata ?? {}) as Record<string, unknown>;
}

/** Asserts a 422 Invalid Status whose causes include one with this reason and field (and message fragment). */
function assertInvalid(r: Reply, want: { reason: string; field: string; message?: RegExp }, statusMessage?: RegExp): void {
  assert.equal(r.status, 422, JSON.stringify(r.body).slice(0, 600));
  assert.equal(r.body.kind, "Status");
  assert.equal(r.body.reason, "Invalid");
  const hit = causesOf(r).find((c) => c.reason === want.reason && c.field === want.field && (want.message === undefined || want.message.test(c.message ?? "")));
  assert.ok(hit, `no cause ${JSON.stringify(want)} in ${JSON.stringify(causesOf(r)).slice(0, 1500)}`);
  if (statusMessage) assert.match(String(r.body.message), statusMessage);
}

describe("API server: ObjectMeta and built-in kind validation", function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  const tag = randomUUID().slice(0, 6);
  const ns = `om-${tag}`;
  const cm = (name: string) => `/api/v1/namespaces/${ns}/configmaps${name === "" ? "" : `/${name}`}`;
  const secret = (name: string) => `/api/v1/namespaces/${ns}/secrets${name === "" ? "" : `/${name}`}`;
  const ng = (name: string) => `/apis/accessfabric.io/v1alpha1/nodegroups${name === "" ? "" : `/${name}`}`;
  const nodeGroup = (name: string, metadata: Record<string, unknown> = {}) => ({
    apiVersion: "accessfabric.io/v1alpha1",
    kind: "NodeGroup",
    metadata: { name, ...metadata },
    spec: { cluster: "cn" },
  });
  const configMap = (name: string, metadata: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name, ...metadata },
    ...extra,
  });
  const absent = async (path: string) => assert.equal((await call(t, "GET", path)).status, 404, `${path} was stored`);

  before(async () => {
    t = await sharedControlPlane();
    const r = await call(t, "POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });

  describe("names", () => {
    it("stores null metadata fields as absent (labels, annotations, finalizers), on create and update", async () => {
      const nulls = { labels: null, annotations: null, finalizers: null, ownerReferences: null };
      const created = await call(t, "POST", cm(""), configMap(`nulls-${tag}`, nulls));
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const put = await call(t, "PUT", cm(`nulls-${tag}`), configMap(`nulls-${tag}`, { ...nulls, resourceVersion: metaOf(created).resourceVersion }, { data: { a: "b" } }));
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const stored = metaOf(await call(t, "GET", cm(`nulls-${tag}`)));
      for (const k of Object.keys(nulls)) assert.ok(!(k in stored), `metadata.${k} stored as ${JSON.stringify(stored[k])}`);
    });

    it("refuses a namespace name with a dot (a namespace is a DNS-1123 label)", async () => {
      const name = `dotted.${tag}`;
      const r = await call(t, "POST", "/api/v1/namespaces", { metadata: { name } });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.name", message: /must not contain dots/ }, new RegExp(`^Namespace "dotted\\.${tag}" is invalid: metadata\\.name: Invalid value: "dotted\\.${tag}": must not contain dots$`));
      await absent(`/api/v1/namespaces/${name}`);
    });

    it("refuses a 64-character namespace name and accepts 63", async () => {
      const long = `n${tag}`.padEnd(64, "x");
      const r = await call(t, "POST", "/api/v1/namespaces", { metadata: { name: long } });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.name", message: /must be no more than 63 characters/ });
      await absent(`/api/v1/namespaces/${long}`);
      const ok = await call(t, "POST", "/api/v1/namespaces", { metadata: { name: long.slice(0, 63) } });
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });

    it("refuses a 254-character custom object name and accepts 253 with dots", async () => {
      const long = `g${tag}.`.padEnd(254, "y");
      const r = await call(t, "POST", ng(""), nodeGroup(long));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.name", message: /must be no more than 253 characters/ });
      await absent(ng(long));
      const ok = await call(t, "POST", ng(""), nodeGroup(long.slice(0, 253)));
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });

    it("refuses an uppercase ConfigMap name (a DNS-1123 subdomain)", async () => {
      const r = await call(t, "POST", cm(""), configMap(`Upper-${tag}`));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.name", message: /lowercase RFC 1123 subdomain/ });
      await absent(cm(`Upper-${tag}`));
    });

    it("checks core/v1 Event names as path segments only, like kube", async () => {
      const ev = (name: string) => ({ apiVersion: "v1", kind: "Event", metadata: { name }, involvedObject: { kind: "ConfigMap", name: "x", namespace: ns }, reason: "Test" });
      const bad = await call(t, "POST", `/api/v1/namespaces/${ns}/events`, ev(".."));
      assertInvalid(bad, { reason: "FieldValueInvalid", field: "metadata.name", message: /may not be '\.\.'/ });
      const ok = await call(t, "POST", `/api/v1/namespaces/${ns}/events`, ev(`Mixed_Case.${tag}`));
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });

    it("refuses an invalid generateName and cuts a long one so the name fits", async () => {
      const r = await call(t, "POST", cm(""), configMap("", { generateName: "Bad_Prefix-" }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.generateName" });
      assert.ok(!causesOf(r).some((c) => c.field === "metadata.name"), "the generated name is not reported as well");
      const long = await call(t, "POST", ng(""), nodeGroup("", { generateName: `gen-${tag}-`.padEnd(100, "z") }));
      assert.equal(long.status, 201, JSON.stringify(long.body));
      assert.equal(String(metaOf(long).name).length, 63);
    });
  });

  describe("namespace", () => {
    it("never stores a namespace on a cluster-scoped object, created or patched in", async () => {
      const name = `ns-cs-${tag}`;
      const created = await call(t, "POST", ng(""), nodeGroup(name, { namespace: ns }));
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(metaOf(created).namespace, undefined);
      const patched = await call(t, "PATCH", ng(name), { metadata: { namespace: ns } }, "application/merge-patch+json");
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.equal(metaOf(patched).namespace, undefined);
      const stored = await call(t, "GET", ng(name));
      assert.equal(metaOf(stored).namespace, undefined);
    });

    it("refuses moving a namespaced object to another namespace (400), by update or patch", async () => {
      const name = `ns-move-${tag}`;
      const created = await call(t, "POST", cm(""), configMap(name));
      assert.equal(created.status, 201);
      const moved = { ...created.body, metadata: { ...metaOf(created), namespace: "default" } };
      const put = await call(t, "PUT", cm(name), moved);
      assert.equal(put.status, 400, JSON.stringify(put.body));
      assert.equal(put.body.reason, "BadRequest");
      assert.match(String(put.body.message), /the namespace of the provided object does not match the namespace sent on the request/);
      const patch = await call(t, "PATCH", cm(name), { metadata: { namespace: "default" } }, "application/merge-patch+json");
      assert.equal(patch.status, 400, JSON.stringify(patch.body));
      const stored = await call(t, "GET", cm(name));
      assert.equal(metaOf(stored).resourceVersion, metaOf(created).resourceVersion);
    });
  });

  describe("server-owned fields", () => {
    it("replaces a client uid on create, even a malformed one (never a 500)", async () => {
      const name = `uid-c-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { uid: "not-a-uuid" }));
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.match(String(metaOf(r).uid), uuidRe);
      const taken = String(metaOf(r).uid);
      const again = await call(t, "POST", cm(""), configMap(`${name}-2`, { uid: taken }));
      assert.equal(again.status, 201, JSON.stringify(again.body));
      assert.notEqual(metaOf(again).uid, taken);
    });

    it("refuses a different uid on update with 409 and keeps the stored object", async () => {
      const name = `uid-u-${tag}`;
      const created = await call(t, "POST", cm(""), configMap(name, {}, { data: { a: "1" } }));
      assert.equal(created.status, 201);
      const body = { ...created.body, metadata: { ...metaOf(created), uid: "not-a-uuid" }, data: { a: "2" } };
      const r = await call(t, "PUT", cm(name), body);
      assert.equal(r.status, 409, JSON.stringify(r.body));
      assert.equal(r.body.reason, "Conflict");
      assert.match(String(r.body.message), /Precondition failed: UID in precondition: not-a-uuid/);
      const stored = await call(t, "GET", cm(name));
      assert.deepEqual(stored.body.data, { a: "1" });
      assert.equal(metaOf(stored).uid, metaOf(created).uid);
    });

    it("refuses a deletionTimestamp set by a client patch (422 immutable)", async () => {
      const name = `del-p-${tag}`;
      const created = await call(t, "POST", cm(""), configMap(name));
      const r = await call(t, "PATCH", cm(name), { metadata: { deletionTimestamp: "2030-01-01T00:00:00Z" } }, "application/merge-patch+json");
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.deletionTimestamp", message: /field is immutable/ });
      const stored = await call(t, "GET", cm(name));
      assert.equal(metaOf(stored).deletionTimestamp, undefined);
      assert.equal(metaOf(stored).resourceVersion, metaOf(created).resourceVersion);
    });

    it("drops client deletion fields and uid when server-side apply creates the object", async () => {
      const name = `del-a-${tag}`;
      const yaml = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n  uid: not-a-uuid\n  deletionTimestamp: "2030-01-01T00:00:00Z"\n  deletionGracePeriodSeconds: 30\n`;
      const r = await call(t, "PATCH", `${cm(name)}?fieldManager=om-test`, yaml, "application/apply-patch+yaml");
      assert.equal(r.status, 201, JSON.stringify(r.body));
      const stored = await call(t, "GET", cm(name));
      assert.equal(metaOf(stored).deletionTimestamp, undefined);
      assert.equal(metaOf(stored).deletionGracePeriodSeconds, undefined);
      assert.match(String(metaOf(stored).uid), uuidRe);
    });
  });

  describe("labels, annotations, finalizers, ownerReferences, managedFields", () => {
    it("refuses a label key that is not a qualified name, with kube's message", async () => {
      const name = `lbl-k-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { labels: { "bad key": "v" } }));
      assertInvalid(
        r,
        { reason: "FieldValueInvalid", field: "metadata.labels", message: /^Invalid value: "bad key": name part must consist of alphanumeric characters/ },
        new RegExp(`^ConfigMap "${name}" is invalid: metadata\\.labels: Invalid value: "bad key": name part must consist`),
      );
      await absent(cm(name));
    });

    it("refuses a label key prefix of 254 characters", async () => {
      const name = `lbl-p-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { labels: { [`${"p".repeat(254)}/k`]: "v" } }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.labels", message: /prefix part must be no more than 253 characters/ });
      await absent(cm(name));
    });

    it("refuses a 64-character label value and accepts 63", async () => {
      const name = `lbl-v-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { labels: { k: "v".repeat(64) } }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.labels", message: /must be no more than 63 characters/ });
      await absent(cm(name));
      const ok = await call(t, "POST", cm(""), configMap(name, { labels: { k: "v".repeat(63), "example.com/empty": "" } }));
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });

    it("refuses an invalid label added by a patch and keeps the stored object", async () => {
      const name = `lbl-pa-${tag}`;
      const created = await call(t, "POST", ng(""), nodeGroup(name));
      const r = await call(t, "PATCH", ng(name), { metadata: { labels: { ok: "-bad-" } } }, "application/merge-patch+json");
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.labels" }, new RegExp(`^NodeGroup\\.accessfabric\\.io "${name}" is invalid: metadata\\.labels`));
      const stored = await call(t, "GET", ng(name));
      assert.equal(metaOf(stored).resourceVersion, metaOf(created).resourceVersion);
    });

    it("refuses annotations over 256 KiB in total (FieldValueTooLong)", async () => {
      const name = `ann-big-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { annotations: { a: "x".repeat(200 * 1024), b: "y".repeat(60 * 1024) } }));
      assertInvalid(r, { reason: "FieldValueTooLong", field: "metadata.annotations", message: /^Too long: may not be more than 262144 bytes$/ });
      await absent(cm(name));
    });

    it("refuses an annotation key that is not a qualified name", async () => {
      const name = `ann-k-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { annotations: { "a/b/c": "v" } }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.annotations", message: /a qualified name must consist/ });
      await absent(cm(name));
    });

    it("refuses a finalizer that is not a qualified name", async () => {
      const name = `fin-${tag}`;
      const r = await call(t, "POST", ng(""), nodeGroup(name, { finalizers: ["example.com/ok", "not ok!"] }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.finalizers", message: /^Invalid value: "not ok!"/ });
      await absent(ng(name));
    });

    it("refuses an ownerReference without a version or uid, and two controllers", async () => {
      const name = `own-${tag}`;
      const ref = (n: string, controller: boolean) => ({ apiVersion: "accessfabric.io/v1alpha1", kind: "NodeGroup", name: n, uid: randomUUID(), controller });
      const r = await call(t, "POST", cm(""), configMap(name, { ownerReferences: [{ apiVersion: "", kind: "NodeGroup", name: "x", uid: "" }] }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.ownerReferences.apiVersion", message: /version must not be empty/ });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.ownerReferences.uid", message: /uid must not be empty/ });
      const two = await call(t, "POST", cm(""), configMap(name, { ownerReferences: [ref("a", true), ref("b", true)] }));
      assertInvalid(two, { reason: "FieldValueInvalid", field: "metadata.ownerReferences", message: /Only one reference can have Controller set to true/ });
      await absent(cm(name));
    });

    it("refuses a managedFields entry with an unknown operation", async () => {
      const name = `mf-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { managedFields: [{ manager: "m", operation: "Bogus", apiVersion: "v1", fieldsType: "FieldsV1", fieldsV1: {} }] }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "metadata.managedFields[0].operation", message: /must be `Apply` or `Update`/ });
      await absent(cm(name));
    });
  });

  describe("built-in kinds", () => {
    it("refuses ConfigMap data keys that are not config keys", async () => {
      const name = `cm-k-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, {}, { data: { "bad/key": "1", "..": "2" } }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "data[bad/key]", message: /a valid config key must consist of alphanumeric characters/ });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "data[..]", message: /must not be '\.\.'/ });
      await absent(cm(name));
    });

    it("refuses a ConfigMap key present in both data and binaryData", async () => {
      const name = `cm-dup-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, {}, { data: { k: "v" }, binaryData: { k: "dg==" } }));
      assertInvalid(r, { reason: "FieldValueInvalid", field: "data[k]", message: /duplicate of key present in binaryData/ });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "binaryData[k]", message: /duplicate of key present in data/ });
      await absent(cm(name));
    });

    it("refuses a wrongly typed ConfigMap field (422 FieldValueTypeInvalid)", async () => {
      const name = `cm-type-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, {}, { data: "not-a-map" }));
      assertInvalid(r, { reason: "FieldValueTypeInvalid", field: "data" });
      await absent(cm(name));
    });

    it("refuses Secret data that is not base64 and keys that are not config keys", async () => {
      const name = `sec-${tag}`;
      const r = await call(t, "POST", secret(""), { apiVersion: "v1", kind: "Secret", metadata: { name }, data: { ok: "not base64!" } });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "data.ok" });
      const keys = await call(t, "POST", secret(""), { apiVersion: "v1", kind: "Secret", metadata: { name }, stringData: { "a b": "x" } });
      assertInvalid(keys, { reason: "FieldValueInvalid", field: "data[a b]", message: /a valid config key/ });
      await absent(secret(name));
    });

    it("prunes unknown fields of built-in kinds with a warning, and refuses them under Strict", async () => {
      const name = `cm-unk-${tag}`;
      const r = await call(t, "POST", cm(""), configMap(name, { bogusMeta: 1 }, { data: { a: "1" }, bogus: { x: 1 } }));
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.match(String(r.headers.warning), /unknown field \\"bogus\\"/);
      assert.match(String(r.headers.warning), /unknown field \\"metadata\.bogusMeta\\"/);
      const stored = await call(t, "GET", cm(name));
      assert.equal(stored.body.bogus, undefined, "unknown field stored");
      assert.equal(metaOf(stored).bogusMeta, undefined, "unknown metadata field stored");
      const strict = await call(t, "POST", `${cm("")}?fieldValidation=Strict`, configMap(`${name}-s`, {}, { bogus: 1 }));
      assert.equal(strict.status, 400, JSON.stringify(strict.body));
      assert.match(String(strict.body.message), /strict decoding error: unknown field "bogus"/);
      await absent(cm(`${name}-s`));
    });

    it("keeps the data of an immutable ConfigMap", async () => {
      const name = `cm-imm-${tag}`;
      const created = await call(t, "POST", cm(""), configMap(name, {}, { data: { a: "1" }, immutable: true }));
      assert.equal(created.status, 201);
      const r = await call(t, "PATCH", cm(name), { data: { a: "2" } }, "application/merge-patch+json");
      assertInvalid(r, { reason: "FieldValueForbidden", field: "data", message: /field is immutable when `immutable` is set/ });
      const stored = await call(t, "GET", cm(name));
      assert.deepEqual(stored.body.data, { a: "1" });
    });

    it("refuses a Lease with a non-positive duration", async () => {
      const name = `lease-${tag}`;
      const path = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
      const r = await call(t, "POST", path, { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name }, spec: { leaseDurationSeconds: 0 } });
      assertInvalid(r, { reason: "FieldValueInvalid", field: "spec.leaseDurationSeconds", message: /must be greater than 0/ });
      await absent(`${path}/${name}`);
    });
  });
});
