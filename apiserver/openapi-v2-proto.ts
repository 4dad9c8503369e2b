/**
 * Encodes a Swagger 2.0 JSON document as gnostic's `openapi.v2.Document`
 * protobuf (github.com/google/gnostic openapiv2/OpenAPIv2.proto), which
 * client-go's discovery `OpenAPISchema()` requests from `/openapi/v2` with
 * `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and
 * kubectl 1.20 needs for `explain` and client-side validation.
 *
 * Hand-written encoding over protobuf-writer.ts, following gnostic's
 * JSON→proto compiler: `x-` keys become vendor extensions (NamedAny whose
 * Any carries YAML text; JSON is used, a YAML subset that go-yaml v2 reads
 * back unambiguously), `default`/`example`/`enum` values likewise; set
 * oneofs and present sub-messages are emitted even when empty or false, as
 * Go's encoder does.
 */
import { ProtobufWriter } from "./protobuf-writer.js";

/** A Swagger 2.0 document as parsed JSON. */
export type SwaggerJson = Record<string, unknown>;

/** MIME type client-go sends in Accept to get this encoding. */
export const openAPIv2ProtoMediaType = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/**
 * Content-Type to answer with, as kube-openapi does: `@` is no MIME token
 * character, and client-go fails ("mime: unexpected content after media
 * subtype") on a response labelled with {@link openAPIv2ProtoMediaType}.
 */
export const openAPIv2ProtoContentType = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

type Json = Record<string, unknown>;

const textEncoder = new TextEncoder();

/** A protobuf message under construction, with proto3's omission of zero values. */
class Msg {
  private readonly w = new ProtobufWriter();

  /** A string field; proto3 omits "". */
  string(field: number, v: unknown): this {
    if (typeof v === "string" && v !== "") this.w.bytesField(field, textEncoder.encode(v));
    return this;
  }

  strings(field: number, v: unknown): this {
    for (const s of asStringList(v)) this.w.bytesField(field, textEncoder.encode(s));
    return this;
  }

  bool(field: number, v: unknown, force = false): this {
    if (typeof v === "boolean" && (v || force)) this.w.varintField(field, v ? 1n : 0n);
    return this;
  }

  int64(field: number, v: unknown): this {
    if (typeof v === "number" && Number.isFinite(v) && v !== 0) this.w.varintField(field, BigInt(Math.trunc(v)));
    return this;
  }

  double(field: number, v: unknown): this {
    if (typeof v === "number" && v !== 0) this.w.doubleField(field, v);
    return this;
  }

  message(field: number, m: Msg | undefined): this {
    if (m !== undefined) this.w.bytesField(field, m.finish());
    return this;
  }

  messages(field: number, ms: readonly Msg[]): this {
    for (const m of ms) this.message(field, m);
    return this;
  }

  finish(): Uint8Array {
    return this.w.finish();
  }
}

function isJson(v: unknown): v is Json {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function asStringList(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === "string");
  return [];
}

function entries(v: unknown): Array<[string, unknown]> {
  return isJson(v) ? Object.entries(v) : [];
}

/** gnostic `Any`: the value as YAML text (here: JSON, which is YAML). */
function anyMsg(v: unknown): Msg {
  return new Msg().string(2, `${JSON.stringify(v)}\n`);
}

function namedAny(name: string, v: unknown): Msg {
  return new Msg().string(1, name).message(2, anyMsg(v));
}

/** Vendor extensions: every `x-` key, in document order. */
function vendorExtensions(obj: Json): Msg[] {
  return Object.entries(obj)
    .filter(([k]) => k.startsWith("x-"))
    .map(([k, v]) => namedAny(k, v));
}

function optionalAny(v: unknown): Msg | undefined {
  return v === undefined ? undefined : anyMsg(v);
}

function enumValues(v: unknown): Msg[] {
  return Array.isArray(v) ? v.map(anyMsg) : [];
}

function externalDocs(v: unknown): Msg | undefined {
  if (!isJson(v)) return undefined;
  return new Msg().string(1, v["description"]).string(2, v["url"]).messages(3, vendorExtensions(v));
}

function xml(v: unknown): Msg | undefined {
  if (!isJson(v)) return undefined;
  return new Msg()
    .string(1, v["name"])
    .string(2, v["namespace"])
    .string(3, v["prefix"])
    .bool(4, v["attribute"])
    .bool(5, v["wrapped"])
    .messages(6, vendorExtensions(v));
}

function schema(s: Json): Msg {
  const m = new Msg()
    .string(1, s["$ref"])
    .string(2, s["format"])
    .string(3, s["title"])
    .string(4, s["description"])
    .message(5, optionalAny(s["default"]))
    .double(6, s["multipleOf"])
    .double(7, s["maximum"])
    .bool(8, s["exclusiveMaximum"])
    .double(9, s["minimum"])
    .bool(10, s["exclusiveMinimum"])
    .int64(11, s["maxLength"])
    .int64(12, s["minLength"])
    .string(13, s["pattern"])
    .int64(14, s["maxItems"])
    .int64(15, s["minItems"])
    .bool(16, s["uniqueItems"])
    .int64(17, s["maxProperties"])
    .int64(18, s["minProperties"])
    .strings(19, s["required"])
    .messages(20, enumValues(s["enum"]));
  const ap = s["additionalProperties"];
  if (typeof ap === "boolean") m.message(21, new Msg().bool(2, ap, true));
  else if (isJson(ap)) m.message(21, new Msg().message(1, schema(ap)));
  if (s["type"] !== undefined) m.message(22, new Msg().strings(1, s["type"]));
  const items = s["items"];
  if (isJson(items)) m.message(23, new Msg().message(1, schema(items)));
  else if (Array.isArray(items)) m.message(23, new Msg().messages(1, items.filter(isJson).map(schema)));
  const allOf = s["allOf"];
  if (Array.isArray(allOf)) m.messages(24, allOf.filter(isJson).map(schema));
  if (isJson(s["properties"])) m.message(25, namedSchemas(s["properties"]));
  return m
    .string(26, s["discriminator"])
    .bool(27, s["readOnly"])
    .message(28, xml(s["xml"]))
    .message(29, externalDocs(s["externalDocs"]))
    .message(30, optionalAny(s["example"]))
    .messages(31, vendorExtensions(s));
}

/** `Properties` / `Definitions`: repeated NamedSchema in field 1. */
function namedSchemas(obj: Json): Msg {
  return new Msg().messages(
    1,
    entries(obj)
      .filter((e): e is [string, Json] => isJson(e[1]))
      .map(([name, s]) => new Msg().string(1, name).message(2, schema(s))),
  );
}

function fileSchema(s: Json): Msg {
  return new Msg()
    .string(1, s["format"])
    .string(2, s["title"])
    .string(3, s["description"])
    .message(4, optionalAny(s["default"]))
    .strings(5, s["required"])
    .string(6, s["type"])
    .bool(7, s["readOnly"])
    .message(8, externalDocs(s["externalDocs"]))
    .message(9, optionalAny(s["example"]))
    .messages(10, vendorExtensions(s));
}

/**
 * The validation keywords shared by PrimitivesItems, Header and the
 * non-body parameter sub-schemas, written from field `first` on in the
 * order type, format, items, collectionFormat, default, maximum,
 * exclusiveMaximum, minimum, exclusiveMinimum, maxLength, minLength,
 * pattern, maxItems, minItems, uniqueItems, enum, multipleOf.
 */
function primitiveKeywords(m: Msg, first: number, p: Json): Msg {
  const items = p["items"];
  return m
    .string(first, p["type"])
    .string(first + 1, p["format"])
    .message(first + 2, isJson(items) ? primitivesItems(items) : undefined)
    .string(first + 3, p["collectionFormat"])
    .message(first + 4, optionalAny(p["default"]))
    .double(first + 5, p["maximum"])
    .bool(first + 6, p["exclusiveMaximum"])
    .double(first + 7, p["minimum"])
    .bool(first + 8, p["exclusiveMinimum"])
    .int64(first + 9, p["maxLength"])
    .int64(first + 10, p["minLength"])
    .string(first + 11, p["pattern"])
    .int64(first + 12, p["maxItems"])
    .int64(first + 13, p["minItems"])
    .bool(first + 14, p["uniqueItems"])
    .messages(first + 15, enumValues(p["enum"]))
    .double(first + 16, p["multipleOf"]);
}

function primitivesItems(p: Json): Msg {
  return primitiveKeywords(new Msg(), 1, p).messages(18, vendorExtensions(p));
}

function header(h: Json): Msg {
  return primitiveKeywords(new Msg(), 1, h).string(18, h["description"]).messages(19, vendorExtensions(h));
}

function parameter(p: Json): Msg {
  const where = p["in"];
  if (where === "body") {
    const body = new Msg()
      .string(1, p["description"])
      .string(2, p["name"])
      .string(3, p["in"])
      .bool(4, p["required"])
      .message(5, isJson(p["schema"]) ? schema(p["schema"]) : undefined)
      .messages(6, vendorExtensions(p));
    return new Msg().message(1, body);
  }
  const sub = new Msg().bool(1, p["required"]).string(2, p["in"]).string(3, p["description"]).string(4, p["name"]);
  let which: number;
  if (where === "query" || where === "formData") {
    sub.bool(5, p["allowEmptyValue"]);
    primitiveKeywords(sub, 6, p).messages(23, vendorExtensions(p));
    which = where === "query" ? 3 : 2;
  } else {
    // header and path sub-schemas share one layout.
    primitiveKeywords(sub, 5, p).messages(22, vendorExtensions(p));
    which = where === "header" ? 1 : 4;
  }
  return new Msg().message(2, new Msg().message(which, sub));
}

function jsonReference(r: Json): Msg {
  return new Msg().string(1, r["$ref"]).string(2, r["description"]);
}

/** ParametersItem: a parameter or a `$ref` to one. */
function parametersItem(p: Json): Msg {
  if (typeof p["$ref"] === "string") return new Msg().message(2, jsonReference(p));
  return new Msg().message(1, parameter(p));
}

function response(r: Json): Msg {
  const m = new Msg().string(1, r["description"]);
  const s = r["schema"];
  if (isJson(s)) {
    m.message(2, s["type"] === "file" ? new Msg().message(2, fileSchema(s)) : new Msg().message(1, schema(s)));
  }
  if (isJson(r["headers"])) {
    m.message(
      3,
      new Msg().messages(
        1,
        entries(r["headers"])
          .filter((e): e is [string, Json] => isJson(e[1]))
          .map(([name, h]) => new Msg().string(1, name).message(2, header(h))),
      ),
    );
  }
  if (isJson(r["examples"])) {
    m.message(4, new Msg().messages(1, entries(r["examples"]).map(([k, v]) => namedAny(k, v))));
  }
  return m.messages(5, vendorExtensions(r));
}

function responses(rs: Json): Msg {
  const codes = entries(rs)
    .filter((e): e is [string, Json] => !e[0].startsWith("x-") && isJson(e[1]))
    .map(([code, r]) => {
      const value =
        typeof r["$ref"] === "string" ? new Msg().message(2, jsonReference(r)) : new Msg().message(1, response(r));
      return new Msg().string(1, code).message(2, value);
    });
  return new Msg().messages(1, codes).messages(2, vendorExtensions(rs));
}

function securityRequirements(v: unknown): Msg[] {
  if (!Array.isArray(v)) return [];
  return v.filter(isJson).map((req) =>
    new Msg().messages(
      1,
      Object.entries(req).map(([name, scopes]) => new Msg().string(1, name).message(2, new Msg().strings(1, scopes))),
    ),
  );
}

function operation(op: Json): Msg {
  const params = op["parameters"];
  return new Msg()
    .strings(1, op["tags"])
    .string(2, op["summary"])
    .string(3, op["description"])
    .message(4, externalDocs(op["externalDocs"]))
    .string(5, op["operationId"])
    .strings(6, op["produces"])
    .strings(7, op["consumes"])
    .messages(8, Array.isArray(params) ? params.filter(isJson).map(parametersItem) : [])
    .message(9, isJson(op["responses"]) ? responses(op["responses"]) : undefined)
    .strings(10, op["schemes"])
    .bool(11, op["deprecated"])
    .messages(12, securityRequirements(op["security"]))
    .messages(13, vendorExtensions(op));
}

const methodFields: ReadonlyArray<[string, number]> = [
  ["get", 2],
  ["put", 3],
  ["post", 4],
  ["delete", 5],
  ["options", 6],
  ["head", 7],
  ["patch", 8],
];

function pathItem(p: Json): Msg {
  const m = new Msg().string(1, p["$ref"]);
  for (const [method, field] of methodFields) {
    const op = p[method];
    if (isJson(op)) m.message(field, operation(op));
  }
  const params = p["parameters"];
  if (Array.isArray(params)) m.messages(9, params.filter(isJson).map(parametersItem));
  return m.messages(10, vendorExtensions(p));
}

function paths(ps: Json): Msg {
  return new Msg().messages(1, vendorExtensions(ps)).messages(
    2,
    entries(ps)
      .filter((e): e is [string, Json] => !e[0].startsWith("x-") && isJson(e[1]))
      .map(([path, item]) => new Msg().string(1, path).message(2, pathItem(item))),
  );
}

function info(i: Json): Msg {
  const contact = i["contact"];
  const license = i["license"];
  return new Msg()
    .string(1, i["title"])
    .string(2, i["version"])
    .string(3, i["description"])
    .string(4, i["termsOfService"])
    .message(
      5,
      isJson(contact)
        ? new Msg()
            .string(1, contact["name"])
            .string(2, contact["url"])
            .string(3, contact["email"])
            .messages(4, vendorExtensions(contact))
        : undefined,
    )
    .message(
      6,
      isJson(license)
        ? new Msg().string(1, license["name"]).string(2, license["url"]).messages(3, vendorExtensions(license))
        : undefined,
    )
    .messages(7, vendorExtensions(i));
}

function oauthScopes(v: unknown): Msg | undefined {
  if (!isJson(v)) return undefined;
  return new Msg().messages(
    1,
    Object.entries(v).map(([k, s]) => new Msg().string(1, k).string(2, s)),
  );
}

function securityDefinition(d: Json): Msg | undefined {
  const ext = vendorExtensions(d);
  switch (d["type"]) {
    case "basic":
      return new Msg().message(1, new Msg().string(1, d["type"]).string(2, d["description"]).messages(3, ext));
    case "apiKey":
      return new Msg().message(
        2,
        new Msg().string(1, d["type"]).string(2, d["name"]).string(3, d["in"]).string(4, d["description"]).messages(5, ext),
      );
    case "oauth2": {
      const base = (): Msg => new Msg().string(1, d["type"]).string(2, d["flow"]).message(3, oauthScopes(d["scopes"]));
      switch (d["flow"]) {
        case "implicit":
          return new Msg().message(
            3,
            base().string(4, d["authorizationUrl"]).string(5, d["description"]).messages(6, ext),
          );
        case "password":
          return new Msg().message(4, base().string(4, d["tokenUrl"]).string(5, d["description"]).messages(6, ext));
        case "application":
          return new Msg().message(5, base().string(4, d["tokenUrl"]).string(5, d["description"]).messages(6, ext));
        case "accessCode":
          return new Msg().message(
            6,
            base()
              .string(4, d["authorizationUrl"])
              .string(5, d["tokenUrl"])
              .string(6, d["description"])
              .messages(7, ext),
          );
        default:
          return undefined;
      }
    }
    default:
      return undefined;
  }
}

/**
 * Encodes `doc` (Swagger 2.0 JSON) as a gnostic openapi.v2.Document.
 * Values of unexpected JSON types are left out rather than rejected.
 */
export function encodeOpenAPIv2(doc: SwaggerJson): Uint8Array {
  const m = new Msg()
    .string(1, doc["swagger"])
    .message(2, isJson(doc["info"]) ? info(doc["info"]) : undefined)
    .string(3, doc["host"])
    .string(4, doc["basePath"])
    .strings(5, doc["schemes"])
    .strings(6, doc["consumes"])
    .strings(7, doc["produces"])
    .message(8, isJson(doc["paths"]) ? paths(doc["paths"]) : undefined)
    .message(9, isJson(doc["definitions"]) ? namedSchemas(doc["definitions"]) : undefined);
  if (isJson(doc["parameters"])) {
    m.message(
      10,
      new Msg().messages(
        1,
        entries(doc["parameters"])
          .filter((e): e is [string, Json] => isJson(e[1]))
          .map(([name, p]) => new Msg().string(1, name).message(2, parameter(p))),
      ),
    );
  }
  if (isJson(doc["responses"])) {
    m.message(
      11,
      new Msg().messages(
        1,
        entries(doc["responses"])
          .filter((e): e is [string, Json] => isJson(e[1]))
          .map(([name, r]) => new Msg().string(1, name).message(2, response(r))),
      ),
    );
  }
  m.messages(12, securityRequirements(doc["security"]));
  if (isJson(doc["securityDefinitions"])) {
    const defs: Msg[] = [];
    for (const [name, d] of Object.entries(doc["securityDefinitions"])) {
      const item = isJson(d) ? securityDefinition(d) : undefined;
      if (item !== undefined) defs.push(new Msg().string(1, name).message(2, item));
    }
    m.message(13, new Msg().messages(1, defs));
  }
  const tags = doc["tags"];
  if (Array.isArray(tags)) {
    m.messages(
      14,
      tags
        .filter(isJson)
        .map((t) =>
          new Msg()
            .string(1, t["name"])
            .string(2, t["description"])
            .message(3, externalDocs(t["externalDocs"]))
            .messages(4, vendorExtensions(t)),
        ),
    );
  }
  return m
    .message(15, externalDocs(doc["externalDocs"]))
    .messages(16, vendorExtensions(doc))
    .finish();
}
