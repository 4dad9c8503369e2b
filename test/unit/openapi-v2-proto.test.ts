import assert from "node:assert/strict";
import { encodeOpenAPIv2 } from "../../apiserver/openapi-v2-proto.js";

// A schema-less protobuf wire reader: enough to walk gnostic's messages by
// field number (numbers from gnostic's openapiv2/OpenAPIv2.proto).
type Field = { wire: 0; value: bigint } | { wire: 1; value: number } | { wire: 2; value: Uint8Array };

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[pos];
    if (b === undefined) throw new Error("truncated varint");
    pos++;
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

function decode(buf: Uint8Array): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p1] = readVarint(buf, pos);
    pos = p1;
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    let f: Field;
    if (wire === 0) {
      const [v, p2] = readVarint(buf, pos);
      pos = p2;
      f = { wire: 0, value: v };
    } else if (wire === 1) {
      f = { wire: 1, value: new DataView(buf.buffer, buf.byteOffset + pos, 8).getFloat64(0, true) };
      pos += 8;
    } else if (wire === 2) {
      const [len, p2] = readVarint(buf, pos);
      pos = p2 + Number(len);
      if (pos > buf.length) throw new Error("truncated bytes");
      f = { wire: 2, value: buf.subarray(p2, pos) };
    } else {
      throw new Error(`unexpected wire type ${wire}`);
    }
    const list = out.get(field) ?? [];
    list.push(f);
    out.set(field, list);
  }
  return out;
}

function bytesOf(m: Map<number, Field[]>, n: number): Uint8Array[] {
  return (m.get(n) ?? []).map((f) => {
    assert.equal(f.wire, 2, `field ${n} is length-delimited`);
    return f.value as Uint8Array;
  });
}
const strs = (m: Map<number, Field[]>, n: number): string[] => bytesOf(m, n).map((b) => new TextDecoder().decode(b));
const str = (m: Map<number, Field[]>, n: number): string | undefined => strs(m, n)[0];
const msgs = (m: Map<number, Field[]>, n: number): Array<Map<number, Field[]>> => bytesOf(m, n).map(decode);
function msg(m: Map<number, Field[]>, n: number): Map<number, Field[]> {
  const all = msgs(m, n);
  assert.equal(all.length, 1, `field ${n} present once`);
  return all[0] as Map<number, Field[]>;
}
function varint(m: Map<number, Field[]>, n: number): bigint | undefined {
  const f = m.get(n)?.[0];
  if (f === undefined) return undefined;
  assert.equal(f.wire, 0);
  return f.value as bigint;
}
function double(m: Map<number, Field[]>, n: number): number | undefined {
  const f = m.get(n)?.[0];
  if (f === undefined) return undefined;
  assert.equal(f.wire, 1);
  return f.value as number;
}
/** NamedX lists: name (1) → value (2). */
function named(m: Map<number, Field[]>, n: number): Map<string, Map<number, Field[]>> {
  return new Map(msgs(m, n).map((e) => [str(e, 1) ?? "", msg(e, 2)]));
}
/** An Any's YAML text, parsed (we write JSON, which is YAML). */
const anyValue = (any: Map<number, Field[]>): unknown => JSON.parse(str(any, 2) ?? "null");

const swagger = {
  swagger: "2.0",
  info: { title: "Kubernetes", version: "v1.32.0", "x-origin": "fabric" },
  paths: {
    "/apis/fabric.example.io/v1/namespaces/{namespace}/widgets": {
      get: {
        description: "list Widgets",
        consumes: ["*/*"],
        produces: ["application/json", "application/yaml"],
        schemes: ["https"],
        tags: ["fabricV1"],
        operationId: "listWidgets",
        parameters: [
          { uniqueItems: true, type: "string", name: "labelSelector", in: "query" },
          { uniqueItems: true, type: "integer", name: "limit", in: "query", minimum: -5 },
        ],
        responses: {
          "200": { description: "OK", schema: { $ref: "#/definitions/io.example.fabric.v1.WidgetList" } },
          "401": { description: "Unauthorized" },
        },
        "x-kubernetes-action": "list",
        "x-kubernetes-group-version-kind": { group: "fabric.example.io", kind: "Widget", version: "v1" },
      },
      post: {
        operationId: "createWidget",
        parameters: [{ name: "body", in: "body", required: true, schema: { $ref: "#/definitions/io.example.fabric.v1.Widget" } }],
        responses: { "201": { description: "Created", schema: { $ref: "#/definitions/io.example.fabric.v1.Widget" } } },
      },
      parameters: [
        { $ref: "#/parameters/namespace-vcAfpgbB" },
        { uniqueItems: true, type: "string", name: "pretty", in: "query" },
        { type: "string", name: "X-Trace", in: "header" },
        { type: "string", name: "namespace2", in: "path", required: true },
      ],
    },
  },
  definitions: {
    "io.example.fabric.v1.Widget": {
      description: "Widget is a test resource.",
      type: "object",
      required: ["spec"],
      properties: {
        metadata: { $ref: "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" },
        spec: {
          type: "object",
          properties: {
            size: { type: "integer", format: "int32", minimum: 1, maximum: 10.5, maxLength: 300 },
            color: { type: "string", enum: ["red", "yes"], default: "red" },
            tags: { type: "array", items: { type: "string" }, "x-kubernetes-list-type": "set" },
            labels: { type: "object", additionalProperties: { type: "string" } },
            closed: { type: "object", additionalProperties: false },
            anything: { "x-kubernetes-preserve-unknown-fields": true },
          },
        },
      },
      "x-kubernetes-group-version-kind": [{ group: "fabric.example.io", kind: "Widget", version: "v1" }],
    },
  },
  parameters: {
    "namespace-vcAfpgbB": { uniqueItems: true, type: "string", name: "namespace", in: "path", required: true },
  },
  securityDefinitions: {
    BearerToken: { description: "Bearer Token authentication", type: "apiKey", name: "authorization", in: "header" },
  },
  security: [{ BearerToken: [] }],
};

describe("OpenAPI v2 protobuf encoding", () => {
  const doc = decode(encodeOpenAPIv2(swagger));

  it("writes the document header, info and its vendor extensions", () => {
    assert.equal(str(doc, 1), "2.0");
    const info = msg(doc, 2);
    assert.equal(str(info, 1), "Kubernetes");
    assert.equal(str(info, 2), "v1.32.0");
    const ext = named(info, 7);
    assert.equal(anyValue(ext.get("x-origin") ?? new Map()), "fabric");
  });

  it("writes definitions as NamedSchema with type, required and properties", () => {
    const defs = named(msg(doc, 9), 1);
    const widget = defs.get("io.example.fabric.v1.Widget");
    assert.ok(widget);
    assert.equal(str(widget, 4), "Widget is a test resource.");
    assert.deepEqual(strs(msg(widget, 22), 1), ["object"]);
    assert.deepEqual(strs(widget, 19), ["spec"]);
    const gvk = named(widget, 31).get("x-kubernetes-group-version-kind");
    assert.ok(gvk);
    assert.deepEqual(anyValue(gvk), [{ group: "fabric.example.io", kind: "Widget", version: "v1" }]);
    const props = named(msg(widget, 25), 1);
    assert.equal(str(props.get("metadata") ?? new Map(), 1), "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");
  });

  it("encodes numbers, enums, defaults, items and additionalProperties", () => {
    const widget = named(msg(doc, 9), 1).get("io.example.fabric.v1.Widget") ?? new Map();
    const spec = named(msg(widget, 25), 1).get("spec") ?? new Map();
    const props = named(msg(spec, 25), 1);
    const size = props.get("size") ?? new Map();
    assert.equal(str(size, 2), "int32");
    assert.equal(double(size, 9), 1);
    assert.equal(double(size, 7), 10.5);
    assert.equal(varint(size, 11), 300n);
    const color = props.get("color") ?? new Map();
    assert.deepEqual(msgs(color, 20).map(anyValue), ["red", "yes"]);
    assert.equal(str(msg(color, 5), 2), '"red"\n', "quoted, so go-yaml v2 keeps strings like 'yes' strings");
    const tags = props.get("tags") ?? new Map();
    assert.deepEqual(strs(msg(msg(msg(tags, 23), 1), 22), 1), ["string"]);
    assert.equal(anyValue(named(tags, 31).get("x-kubernetes-list-type") ?? new Map()), "set");
    const labels = props.get("labels") ?? new Map();
    assert.deepEqual(strs(msg(msg(msg(labels, 21), 1), 22), 1), ["string"]);
    const closed = props.get("closed") ?? new Map();
    const ap = msg(closed, 21);
    assert.equal(varint(ap, 2), 0n, "a false oneof boolean is still written");
    const anything = props.get("anything") ?? new Map();
    assert.equal(msgs(anything, 22).length, 0, "no type when none was given");
    assert.equal(anyValue(named(anything, 31).get("x-kubernetes-preserve-unknown-fields") ?? new Map()), true);
  });

  it("writes paths with operations, parameters and responses", () => {
    const paths = named(msg(doc, 8), 2);
    const item = paths.get("/apis/fabric.example.io/v1/namespaces/{namespace}/widgets");
    assert.ok(item);
    const get = msg(item, 2);
    assert.equal(str(get, 5), "listWidgets");
    assert.deepEqual(strs(get, 6), ["application/json", "application/yaml"]);
    assert.deepEqual(strs(get, 10), ["https"]);
    const [labelSelector, limit] = msgs(get, 8);
    assert.ok(labelSelector && limit);
    const query = msg(msg(msg(labelSelector, 1), 2), 3);
    assert.equal(str(query, 4), "labelSelector");
    assert.equal(str(query, 2), "query");
    assert.equal(str(query, 6), "string");
    assert.equal(varint(query, 20), 1n);
    const limitQuery = msg(msg(msg(limit, 1), 2), 3);
    assert.equal(double(limitQuery, 13), -5);
    const responses = named(msg(get, 9), 1);
    const ok = msg(responses.get("200") ?? new Map(), 1);
    assert.equal(str(ok, 1), "OK");
    assert.equal(str(msg(msg(ok, 2), 1), 1), "#/definitions/io.example.fabric.v1.WidgetList");
    assert.equal(str(msg(responses.get("401") ?? new Map(), 1), 1), "Unauthorized");
    const ext = named(get, 13);
    assert.equal(anyValue(ext.get("x-kubernetes-action") ?? new Map()), "list");

    const post = msg(item, 4);
    const body = msg(msg(msgs(post, 8)[0] ?? new Map(), 1), 1);
    assert.equal(str(body, 2), "body");
    assert.equal(varint(body, 4), 1n);
    assert.equal(str(msg(body, 5), 1), "#/definitions/io.example.fabric.v1.Widget");

    const [ref, pretty, header, path] = msgs(item, 9);
    assert.ok(ref && pretty && header && path);
    assert.equal(str(msg(ref, 2), 1), "#/parameters/namespace-vcAfpgbB");
    assert.equal(str(msg(msg(msg(pretty, 1), 2), 3), 4), "pretty");
    assert.equal(str(msg(msg(msg(header, 1), 2), 1), 4), "X-Trace");
    const pathParam = msg(msg(msg(path, 1), 2), 4);
    assert.equal(str(pathParam, 4), "namespace2");
    assert.equal(str(pathParam, 5), "string");
    assert.equal(varint(pathParam, 1), 1n);
  });

  it("writes shared parameters and security", () => {
    const params = named(msg(doc, 10), 1);
    const ns = msg(msg(params.get("namespace-vcAfpgbB") ?? new Map(), 2), 4);
    assert.equal(str(ns, 4), "namespace");
    const [req] = msgs(doc, 12);
    assert.ok(req);
    const bearer = named(req, 1).get("BearerToken");
    assert.ok(bearer);
    assert.deepEqual(strs(bearer, 1), []);
    const defs = named(msg(doc, 13), 1);
    const apiKey = msg(defs.get("BearerToken") ?? new Map(), 2);
    assert.deepEqual([str(apiKey, 1), str(apiKey, 2), str(apiKey, 3)], ["apiKey", "authorization", "header"]);
  });

  it("encodes a negative int64 in ten bytes", () => {
    const enc = decode(encodeOpenAPIv2({ definitions: { x: { minLength: -1 } } }));
    const x = named(msg(enc, 9), 1).get("x") ?? new Map();
    assert.equal(varint(x, 12), (1n << 64n) - 1n);
  });

  it("is deterministic", () => {
    assert.deepEqual(encodeOpenAPIv2(swagger), encodeOpenAPIv2(swagger));
  });
});
