import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  decodeKubeProtobuf,
  encodeKubeProtobuf,
  kubeProtobufMagic,
  UnsupportedProtobufKind,
} from "../../apiserver/kube-protobuf.js";

const fixture = (name: string): Buffer => readFileSync(new URL(`../fixtures/protobuf/${name}`, import.meta.url));

function roundTrip(obj: Record<string, unknown>): Record<string, unknown> {
  const bytes = encodeKubeProtobuf(obj);
  assert.deepEqual([...bytes.subarray(0, 4)], [...kubeProtobufMagic]);
  return decodeKubeProtobuf(bytes);
}

/** A hand-built protobuf message: [fieldNo, wireType, payload] triples, payload a number (varint) or bytes. */
function pb(...fields: [number, 0 | 2, number | Uint8Array | string][]): Uint8Array {
  const out: number[] = [];
  const varint = (v: number) => {
    let n = BigInt.asUintN(64, BigInt(v));
    while (n > 0x7fn) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
  };
  for (const [no, wire, payload] of fields) {
    varint((no << 3) | wire);
    if (wire === 0) varint(payload as number);
    else {
      const b = typeof payload === "string" ? Buffer.from(payload) : (payload as Uint8Array);
      varint(b.length);
      out.push(...b);
    }
  }
  return Uint8Array.from(out);
}

function wrap(apiVersion: string, kind: string, raw: Uint8Array): Uint8Array {
  return Uint8Array.from([...kubeProtobufMagic, ...pb([1, 2, pb([1, 2, apiVersion], [2, 2, kind])], [2, 2, raw], [3, 2, ""], [4, 2, ""])]);
}

describe("Kubernetes protobuf codec", () => {
  describe("bodies captured from kubectl 1.32", () => {
    // Recorded from `kubectl create ns foo`, `kubectl create secret generic s -n foo
    // --from-literal=a=b --from-literal=pw='p@ss/w+rd'` and `kubectl create configmap cm -n foo
    // --from-literal=k=v --from-literal=x='hello world'` (Content-Type application/vnd.kubernetes.protobuf).
    const cases: [string, Record<string, unknown>][] = [
      [
        "kubectl-create-namespace.pb",
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "foo", creationTimestamp: null }, spec: {}, status: {} },
      ],
      [
        "kubectl-create-secret-generic.pb",
        {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "s", namespace: "foo", creationTimestamp: null },
          data: { a: Buffer.from("b").toString("base64"), pw: Buffer.from("p@ss/w+rd").toString("base64") },
        },
      ],
      [
        "kubectl-create-configmap.pb",
        {
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "cm", namespace: "foo", creationTimestamp: null },
          data: { k: "v", x: "hello world" },
        },
      ],
    ];
    for (const [file, want] of cases) {
      it(`decodes ${file} as kubectl's JSON would read`, () => {
        assert.deepStrictEqual(decodeKubeProtobuf(fixture(file)), want);
      });
      it(`re-encodes ${file} byte for byte`, () => {
        const body = fixture(file);
        assert.ok(Buffer.from(encodeKubeProtobuf(decodeKubeProtobuf(body))).equals(body));
      });
    }
  });

  it("round-trips a Namespace with full ObjectMeta and status conditions", () => {
    const ns = {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name: "team-a",
        generateName: "team-",
        uid: "6f1d7c57-3a59-4c1e-9a0e-7cf0f4a1f001",
        resourceVersion: "42",
        generation: 3,
        creationTimestamp: "2026-11-21T10:00:00Z",
        deletionTimestamp: "2026-11-21T11:00:00Z",
        deletionGracePeriodSeconds: 0,
        labels: { b: "2", a: "1" },
        annotations: { "example.com/note": "ünïcode ✓" },
        ownerReferences: [
          { apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: "u-1", controller: true, blockOwnerDeletion: false },
          { apiVersion: "v1", kind: "Secret", name: "other", uid: "u-2" },
        ],
        finalizers: ["example.com/a", "example.com/b"],
        managedFields: [
          {
            manager: "kubectl-create",
            operation: "Update",
            apiVersion: "v1",
            time: "2026-11-21T10:00:00Z",
            fieldsType: "FieldsV1",
            fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:a": {} } } },
          },
          { manager: "status-writer", operation: "Update", apiVersion: "v1", subresource: "status" },
        ],
      },
      spec: { finalizers: ["kubernetes"] },
      status: {
        phase: "Terminating",
        conditions: [
          {
            type: "NamespaceDeletionContentFailure",
            status: "False",
            lastTransitionTime: "2026-11-21T10:30:00Z",
            reason: "ContentDeleted",
            message: "All content successfully deleted",
          },
          { type: "Other", status: "Unknown" },
        ],
      },
    };
    const got = roundTrip(ns);
    // Map keys come back sorted; a zero metav1.Time value field is written as null by Go's JSON.
    const want = {
      ...ns,
      metadata: { ...ns.metadata, labels: { a: "1", b: "2" } },
      status: { ...ns.status, conditions: [ns.status.conditions[0], { type: "Other", status: "Unknown", lastTransitionTime: null }] },
    };
    assert.deepStrictEqual(got, want);
    assert.deepEqual(Object.keys(got.metadata as object).slice(0, 3), ["name", "generateName", "uid"]);
  });

  it("keeps Secret bytes as base64, with stringData, type and immutable", () => {
    const binary = Buffer.from([0, 1, 2, 0xfe, 0xff]).toString("base64");
    const got = roundTrip({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s", namespace: "ns" },
      immutable: false,
      data: { bin: binary, empty: "" },
      stringData: { plain: "text" },
      type: "kubernetes.io/tls",
    });
    assert.deepStrictEqual(got, {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s", namespace: "ns", creationTimestamp: null },
      immutable: false,
      data: { bin: binary, empty: "" },
      stringData: { plain: "text" },
      type: "kubernetes.io/tls",
    });
  });

  it("round-trips a ConfigMap with binaryData and omits empty fields", () => {
    const got = roundTrip({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "c", namespace: "ns", labels: {}, finalizers: [] },
      data: {},
      binaryData: { b: Buffer.from("\x00bin").toString("base64") },
      immutable: true,
    });
    assert.deepStrictEqual(got, {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "c", namespace: "ns", creationTimestamp: null },
      immutable: true,
      binaryData: { b: Buffer.from("\x00bin").toString("base64") },
    });
  });

  it("round-trips a core/v1 Event, writing Go's always-present fields", () => {
    const got = roundTrip({
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: "web.1", namespace: "default" },
      involvedObject: { kind: "Pod", namespace: "default", name: "web", uid: "p-1", apiVersion: "v1", fieldPath: "spec.containers{app}" },
      reason: "Started",
      message: "Started container app",
      source: { component: "kubelet", host: "node-1" },
      firstTimestamp: "2026-11-21T10:00:00Z",
      lastTimestamp: "2026-11-21T10:05:00Z",
      count: 2,
      type: "Normal",
      eventTime: "2026-11-21T10:00:00.250000Z",
      series: { count: 2, lastObservedTime: "2026-11-21T10:05:00.000001Z" },
      action: "Start",
      related: { kind: "Node", name: "node-1" },
      reportingComponent: "kubelet",
      reportingInstance: "node-1",
    });
    assert.deepStrictEqual(got.eventTime, "2026-11-21T10:00:00.250000Z");
    assert.deepStrictEqual(got.series, { count: 2, lastObservedTime: "2026-11-21T10:05:00.000001Z" });
    assert.deepStrictEqual(got.related, { kind: "Node", name: "node-1" });

    const bare = roundTrip({ apiVersion: "v1", kind: "Event", metadata: { name: "e" } });
    assert.deepStrictEqual(bare, {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: "e", creationTimestamp: null },
      involvedObject: {},
      source: {},
      firstTimestamp: null,
      lastTimestamp: null,
      eventTime: null,
      reportingComponent: "",
      reportingInstance: "",
    });
  });

  it("round-trips a Lease with MicroTimes and keeps set-but-zero pointer fields", () => {
    const lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: "leader", namespace: "kube-system", resourceVersion: "9" },
      spec: {
        holderIdentity: "cp-a",
        leaseDurationSeconds: 15,
        acquireTime: "2026-11-21T10:00:00.123456Z",
        renewTime: "2026-11-21T10:00:00.000000Z",
        leaseTransitions: 0,
      },
    };
    assert.deepStrictEqual(roundTrip(lease), { ...lease, metadata: { ...lease.metadata, creationTimestamp: null } });
    assert.deepStrictEqual(roundTrip({ apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name: "x" } }).spec, {});
  });

  it("formats times like Go: Time to the second in UTC, MicroTime to the microsecond", () => {
    // seconds 1795255200 = 2026-11-21T10:00:00Z; nanos 123456789
    const t = pb([1, 0, 1795255200], [2, 0, 123456789]);
    const lease = decodeKubeProtobuf(wrap("coordination.k8s.io/v1", "Lease", pb([2, 2, pb([3, 2, t])])));
    assert.deepStrictEqual(lease.spec, { acquireTime: "2026-11-21T10:00:00.123456Z" });
    const ns = decodeKubeProtobuf(wrap("v1", "Namespace", pb([1, 2, pb([8, 2, t])])));
    assert.deepStrictEqual(ns.metadata, { creationTimestamp: "2026-11-21T10:00:00Z" });
    // Offsets are normalised to UTC, fractions of a Time dropped.
    const got = roundTrip({ apiVersion: "v1", kind: "Namespace", metadata: { creationTimestamp: "2026-11-21T11:00:00.9+01:00" } });
    assert.equal((got.metadata as { creationTimestamp: string }).creationTimestamp, "2026-11-21T10:00:00Z");
    const old = roundTrip({ apiVersion: "v1", kind: "Namespace", metadata: { creationTimestamp: "0001-01-01T00:00:01Z" } });
    assert.equal((old.metadata as { creationTimestamp: string }).creationTimestamp, "0001-01-01T00:00:01Z");
  });

  it("decodes DeleteOptions of any v1 group version", () => {
    for (const apiVersion of ["v1", "meta.k8s.io/v1", "coordination.k8s.io/v1"]) {
      const opts = { apiVersion, kind: "DeleteOptions", gracePeriodSeconds: 0, preconditions: { uid: "u-1", resourceVersion: "7" }, propagationPolicy: "Foreground", dryRun: ["All"] };
      assert.deepStrictEqual(roundTrip(opts), opts);
    }
    assert.deepStrictEqual(roundTrip({ apiVersion: "v1", kind: "DeleteOptions", orphanDependents: false, preconditions: {} }), {
      apiVersion: "v1",
      kind: "DeleteOptions",
      orphanDependents: false,
      preconditions: {},
    });
  });

  it("skips fields it does not know", () => {
    const raw = pb([1, 2, pb([1, 2, "n"], [99, 2, "future"], [98, 0, 5])], [42, 0, 1]);
    assert.deepStrictEqual(decodeKubeProtobuf(wrap("v1", "ConfigMap", raw)), {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "n", creationTimestamp: null },
    });
  });

  it("rejects kinds without a schema with UnsupportedProtobufKind", () => {
    assert.throws(
      () => decodeKubeProtobuf(wrap("v1", "Pod", pb([1, 2, pb([1, 2, "p"])]))),
      (err: unknown) => err instanceof UnsupportedProtobufKind && err.apiVersion === "v1" && err.kind === "Pod",
    );
    assert.throws(
      () => decodeKubeProtobuf(wrap("events.k8s.io/v1", "Event", new Uint8Array(0))),
      (err: unknown) => err instanceof UnsupportedProtobufKind && err.apiVersion === "events.k8s.io/v1",
    );
    assert.throws(() => encodeKubeProtobuf({ apiVersion: "apps/v1", kind: "Deployment" }), UnsupportedProtobufKind);
  });

  it("rejects malformed bodies with plain errors", () => {
    const notKind = (err: unknown) => err instanceof Error && !(err instanceof UnsupportedProtobufKind);
    assert.throws(() => decodeKubeProtobuf(Buffer.from('{"kind":"Namespace"}')), notKind);
    assert.throws(() => decodeKubeProtobuf(Uint8Array.from([...kubeProtobufMagic, 0x0a, 0xff])), notKind);
    assert.throws(() => decodeKubeProtobuf(Uint8Array.from([...kubeProtobufMagic, 0x0a, 0x05, 0x0a])), notKind);
    const gzipped = Uint8Array.from([...kubeProtobufMagic, ...pb([1, 2, pb([1, 2, "v1"], [2, 2, "Secret"])], [3, 2, "gzip"])]);
    assert.throws(() => decodeKubeProtobuf(gzipped), /content encoding/);
    // A string field sent as varint.
    assert.throws(() => decodeKubeProtobuf(wrap("v1", "Secret", pb([3, 0, 1]))), /wire type/);
  });
});
