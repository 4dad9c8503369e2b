import assert from "node:assert/strict";
import {
  coreColumns,
  creationTimestampDescription,
  humanDuration,
  nameDescription,
  shortHumanDuration,
  tableVersion,
  toTable,
  wantsTable,
  type Obj,
  type PrinterColumn,
} from "../../apiserver/table.js";

const now = new Date("2024-03-10T12:00:00Z");
const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

function widget(name: string, created: string, extra: Partial<Obj> = {}): Obj {
  return {
    apiVersion: "fabric.example.io/v1",
    kind: "Widget",
    metadata: { name, namespace: "default", resourceVersion: "7", creationTimestamp: created, uid: `uid-${name}` },
    ...extra,
  };
}

describe("human durations", () => {
  const human: Array<[number, string]> = [
    [-3 * S, "<invalid>"],
    [-1500, "0s"],
    [0, "0s"],
    [5 * S, "5s"],
    [119 * S, "119s"],
    [2 * M, "2m"],
    [3 * M + 12 * S, "3m12s"],
    [10 * M + 5 * S, "10m"],
    [179 * M, "179m"],
    [3 * H, "3h"],
    [3 * H + 5 * M, "3h5m"],
    [8 * H + 5 * M, "8h"],
    [47 * H, "47h"],
    [2 * D, "2d"],
    [2 * D + 3 * H, "2d3h"],
    [8 * D + 3 * H, "8d"],
    [400 * D, "400d"],
    [2 * 365 * D, "2y"],
    [2 * 365 * D + 10 * D, "2y10d"],
    [9 * 365 * D, "9y"],
  ];
  for (const [ms, want] of human) {
    it(`HumanDuration(${ms}ms) is ${want}`, () => assert.equal(humanDuration(ms), want));
  }
  const short: Array<[number, string]> = [
    [-3 * S, "<invalid>"],
    [-1 * S, "0s"],
    [59 * S, "59s"],
    [3 * M + 12 * S, "3m"],
    [5 * H + 59 * M, "5h"],
    [2 * D + 3 * H, "2d"],
    [800 * D, "2y"],
  ];
  for (const [ms, want] of short) {
    it(`ShortHumanDuration(${ms}ms) is ${want}`, () => assert.equal(shortHumanDuration(ms), want));
  }
});

describe("CRD tables", () => {
  const columns: PrinterColumn[] = [
    { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: "Size", type: "integer", jsonPath: ".spec.size", description: "Size in units" },
    { name: "Ratio", type: "number", jsonPath: ".spec.ratio", priority: 1 },
    { name: "Paused", type: "boolean", jsonPath: ".spec.paused" },
    { name: "Ports", type: "string", jsonPath: ".spec.ports[*]" },
    { name: "Seen", type: "date", jsonPath: ".status.lastSeen", format: "date-time" },
    { name: "Bad", type: "date", jsonPath: ".spec.bad" },
  ];
  const obj = widget("w1", "2024-03-10T11:58:00Z", {
    spec: { size: 3.7, ratio: 0.5, paused: true, ports: [80, 443], bad: "yesterday" },
    status: { conditions: [{ type: "Ready", status: "True" }], lastSeen: "2024-03-08T09:00:00Z" },
  });

  it("starts with the Name column and follows with the CRD columns", () => {
    const t = toTable([obj], columns, { includeObject: "Metadata", listMeta: {}, now });
    assert.deepEqual(t.columnDefinitions[0], {
      name: "Name",
      type: "string",
      format: "name",
      description: nameDescription,
      priority: 0,
    });
    assert.deepEqual(
      t.columnDefinitions.map((c) => [c.name, c.type, c.format, c.priority]),
      [
        ["Name", "string", "name", 0],
        ["Ready", "string", "", 0],
        ["Size", "integer", "", 0],
        ["Ratio", "number", "", 1],
        ["Paused", "boolean", "", 0],
        ["Ports", "string", "", 0],
        ["Seen", "date", "date-time", 0],
        ["Bad", "date", "", 0],
      ],
    );
    assert.equal(t.columnDefinitions[1]?.description, 'Custom resource definition column (in JSONPath format): .status.conditions[?(@.type=="Ready")].status');
    assert.equal(t.columnDefinitions[2]?.description, "Size in units");
  });

  it("renders cells like kube's cellForJSONValue, first JSONPath result only", () => {
    const t = toTable([obj], columns, { includeObject: "Metadata", listMeta: {}, now });
    assert.deepEqual(t.rows[0]?.cells, ["w1", "True", 3, 0.5, true, "80", "2d", "<invalid>"]);
  });

  it("leaves cells of missing or mistyped values null", () => {
    const bare = widget("w2", "2024-03-10T11:58:00Z", { spec: { size: "big" } });
    const t = toTable([bare], columns, { includeObject: "Metadata", listMeta: {}, now });
    assert.deepEqual(t.rows[0]?.cells, ["w2", null, null, null, null, null, null, null]);
  });

  it("serves Name and Age when the CRD has no printer columns", () => {
    const t = toTable([widget("w1", "2024-03-10T11:56:48Z")], [], { includeObject: "Metadata", listMeta: {}, now });
    assert.deepEqual(
      t.columnDefinitions.map((c) => [c.name, c.type, c.description]),
      [
        ["Name", "string", nameDescription],
        ["Age", "date", creationTimestampDescription],
      ],
    );
    assert.deepEqual(t.rows[0]?.cells, ["w1", "3m"]);
  });

  it("wraps rows in PartialObjectMetadata by default and copies list metadata", () => {
    const t = toTable([widget("w1", "2024-03-10T11:56:48Z")], [], {
      includeObject: "Metadata",
      listMeta: { resourceVersion: "42", continue: "", remainingItemCount: 3 },
      now,
    });
    assert.equal(t.kind, "Table");
    assert.equal(t.apiVersion, "meta.k8s.io/v1");
    assert.deepEqual(t.metadata, { resourceVersion: "42", remainingItemCount: 3 });
    assert.deepEqual(t.rows[0]?.object, {
      kind: "PartialObjectMetadata",
      apiVersion: "meta.k8s.io/v1",
      metadata: widget("w1", "2024-03-10T11:56:48Z").metadata,
    });
  });

  it("follows the asked table version for the row objects", () => {
    const t = toTable([widget("w1", "2024-03-10T11:56:48Z")], [], {
      includeObject: "Metadata",
      listMeta: {},
      now,
      version: "v1beta1",
    });
    assert.equal(t.apiVersion, "meta.k8s.io/v1beta1");
    assert.equal(t.rows[0]?.object?.["apiVersion"], "meta.k8s.io/v1beta1");
  });

  it("embeds the whole object for Object and null for None", () => {
    const o = widget("w1", "2024-03-10T11:56:48Z");
    assert.deepEqual(toTable([o], [], { includeObject: "Object", listMeta: {}, now }).rows[0]?.object, o);
    assert.equal(toTable([o], [], { includeObject: "None", listMeta: {}, now }).rows[0]?.object, null);
  });

  it("omits column definitions for later watch events", () => {
    const t = toTable([widget("w1", "2024-03-10T11:56:48Z")], [], { includeObject: "None", listMeta: {}, now, noHeaders: true });
    assert.deepEqual(t.columnDefinitions, []);
    assert.equal(t.rows[0]?.cells.length, 2);
  });

  it("renders an unset creationTimestamp as <unknown>", () => {
    const o: Obj = { metadata: { name: "x" } };
    assert.deepEqual(toTable([o], [], { includeObject: "None", listMeta: {}, now }).rows[0]?.cells, ["x", null]);
    const o2: Obj = { metadata: { name: "x", creationTimestamp: "" } };
    assert.deepEqual(toTable([o2], [], { includeObject: "None", listMeta: {}, now }).rows[0]?.cells, ["x", "<unknown>"]);
  });
});

describe("core tables", () => {
  const table = (plural: string, o: Obj): unknown[] => {
    const cols = coreColumns[plural];
    assert.ok(cols, plural);
    return toTable([o], cols, { includeObject: "None", listMeta: {}, now }).rows[0]?.cells ?? [];
  };

  it("prints namespaces as Name, Status, Age", () => {
    const cols = coreColumns["namespaces"] ?? [];
    const t = toTable([], cols, { includeObject: "None", listMeta: {}, now });
    assert.deepEqual(t.columnDefinitions.map((c) => c.name), ["Name", "Status", "Age"]);
    assert.deepEqual(
      table("namespaces", { metadata: { name: "default", creationTimestamp: "2024-03-10T11:56:48Z" }, status: { phase: "Active" } }),
      ["default", "Active", "3m12s"],
    );
  });

  it("prints secrets with their type and key count", () => {
    assert.deepEqual(
      table("secrets", { metadata: { name: "s", creationTimestamp: "2024-03-07T12:00:00Z" }, type: "Opaque", data: { a: "", b: "" } }),
      ["s", "Opaque", 2, "3d"],
    );
  });

  it("counts data and binaryData keys of config maps", () => {
    assert.deepEqual(
      table("configmaps", { metadata: { name: "c", creationTimestamp: "2024-03-10T11:59:55Z" }, data: { a: "" }, binaryData: { b: "" } }),
      ["c", 2, "5s"],
    );
  });

  it("prints lease holders", () => {
    assert.deepEqual(
      table("leases", { metadata: { name: "l", creationTimestamp: "2024-03-10T11:59:55Z" }, spec: { holderIdentity: "ctrl-1" } }),
      ["l", "ctrl-1", "5s"],
    );
  });

  it("prints events wide, with kubectl hiding the priority-1 columns", () => {
    const cols = coreColumns["events"] ?? [];
    assert.deepEqual(
      cols.map((c) => [c.name, c.priority ?? 0]),
      [
        ["Last Seen", 0],
        ["Type", 0],
        ["Reason", 0],
        ["Object", 0],
        ["Subobject", 1],
        ["Source", 1],
        ["Message", 0],
        ["First Seen", 1],
        ["Count", 1],
        ["Name", 1],
      ],
    );
    assert.deepEqual(
      table("events", {
        metadata: { name: "e1", creationTimestamp: "2024-03-10T11:00:00Z" },
        type: "Warning",
        reason: "Failed",
        involvedObject: { kind: "Widget", name: "w1" },
        source: { component: "fabric-controller" },
        message: " it broke \n",
        firstTimestamp: "2024-03-10T11:00:00Z",
        lastTimestamp: "2024-03-10T11:59:00Z",
        count: 4,
      }),
      ["60s", "Warning", "Failed", "widget/w1", "", "fabric-controller", "it broke", "60m", 4, "e1"],
    );
  });

  it("falls back to eventTime and series for new-style events", () => {
    const cells = table("events", {
      metadata: { name: "e2" },
      eventTime: "2024-03-10T11:59:30.000000Z",
      series: { count: 2, lastObservedTime: "2024-03-10T11:59:50.000000Z" },
      involvedObject: { kind: "Node" },
      reportingComponent: "agent",
      reportingInstance: "host-1",
    });
    assert.deepEqual(cells, ["10s", "", "", "node", "", "agent, host-1", "", "30s", 2, "e2"]);
  });
});

describe("Accept negotiation", () => {
  const kubectl =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
  const cases: Array<[string | undefined, "v1" | "v1beta1" | undefined]> = [
    [undefined, undefined],
    ["", undefined],
    ["application/json", undefined],
    ["application/json, */*", undefined],
    [kubectl, "v1"],
    ["application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json", "v1beta1"],
    ["application/json;as=Table;v=v2;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io", "v1beta1"],
    ["application/json, application/json;as=Table;v=v1;g=meta.k8s.io", undefined],
    ["application/json;q=0.5, application/json;as=Table;v=v1;g=meta.k8s.io", "v1"],
    ["application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json", undefined],
    ["application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io", "v1"],
    ["application/json; as=Table; v=v1; g=meta.k8s.io", "v1"],
  ];
  for (const [accept, want] of cases) {
    it(`${JSON.stringify(accept)} negotiates ${want ?? "no table"}`, () => {
      assert.equal(tableVersion(accept), want);
      assert.equal(wantsTable(accept), want !== undefined);
    });
  }
});
