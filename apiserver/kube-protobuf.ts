/**
 * Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) for the few
 * built-in kinds that client-go's typed clients and kubectl's imperative
 * commands (`create namespace|secret|configmap`, leader election, event
 * recorders) send in that encoding: core/v1 Namespace, Secret, ConfigMap,
 * Event, coordination.k8s.io/v1 Lease and meta/v1 DeleteOptions.
 *
 * Wire format (k8s.io/apimachinery/pkg/runtime/serializer/protobuf): the four
 * magic bytes `k8s\0`, then a `runtime.Unknown` message
 * (k8s.io/apimachinery/pkg/runtime/generated.proto) whose typeMeta names the
 * apiVersion/kind and whose raw holds the typed object's message.
 *
 * Hand-written, schema-table driven codec rather than protobufjs + a .proto
 * file: the wire writing (protobuf-writer.ts) is shared with
 * openapi-v2-proto.ts, no new dependency is needed, and the part protobufjs cannot do for us is the
 * important one anyway — reproducing Go's JSON shape (omitempty vs. pointer
 * vs. always-present struct fields, `null` zero times, second vs. microsecond
 * time precision, base64 for []byte, raw JSON for FieldsV1) and gogo's
 * encoder behaviour (non-pointer fields are always written, even when zero).
 * Field numbers and names come from the generated.proto files of
 * k8s.io/api core/v1 and coordination/v1 and k8s.io/apimachinery meta/v1 and
 * runtime; the tables below keep those names (which equal the JSON names).
 */
import { ProtobufWriter } from "./protobuf-writer.js";

/** The magic prefix of every Kubernetes protobuf body. */
export const kubeProtobufMagic = Uint8Array.from([0x6b, 0x38, 0x73, 0x00]);

/** Content type of Kubernetes protobuf bodies. */
export const kubeProtobufMediaType = "application/vnd.kubernetes.protobuf";

/** A kind this codec has no schema for. */
export class UnsupportedProtobufKind extends Error {
  constructor(
    readonly apiVersion: string,
    readonly kind: string,
  ) {
    super(`protobuf encoding is not supported for ${kind || "<no kind>"} (${apiVersion || "<no apiVersion>"}); send JSON instead`);
    this.name = "UnsupportedProtobufKind";
  }
}

type Json = Record<string, unknown>;

// ---------------------------------------------------------------------------
// Schema tables.

/**
 * How Go's encoding/json treats a field:
 * - `omitempty`: a value field with `omitempty` — left out when zero ("", 0, false, empty list/map);
 * - `ptr`: a pointer field — present exactly when set on the wire (even if zero);
 * - `always`: no `omitempty`, or a struct value (which omitempty never drops):
 *   always written, zero value / `{}` / `null` (times) when unset.
 * On the wire gogo always writes non-pointer fields and writes pointer fields when non-nil.
 */
type Presence = "omitempty" | "ptr" | "always";

type ScalarType = "string" | "bytes" | "int32" | "int64" | "bool";
/** metav1.Time (JSON: RFC3339 seconds), metav1.MicroTime (RFC3339 microseconds), metav1.FieldsV1 (raw JSON). */
type SpecialType = "time" | "microtime" | "fieldsV1";
type MapType = "map<string,string>" | "map<string,bytes>";
type FieldType = ScalarType | SpecialType | MapType | MsgDef;

interface FieldDef {
  no: number;
  name: string;
  type: FieldType;
  presence: Presence;
  repeated: boolean;
}

interface MsgDef {
  name: string;
  /** In Go struct (JSON) order. */
  fields: FieldDef[];
}

function field(no: number, name: string, type: FieldType, presence: Presence, repeated = false): FieldDef {
  return { no, name, type, presence, repeated };
}

function msg(name: string, fields: FieldDef[]): MsgDef {
  return { name, fields };
}

// k8s.io/apimachinery/pkg/runtime/generated.proto
const TypeMeta = msg("runtime.TypeMeta", [field(1, "apiVersion", "string", "omitempty"), field(2, "kind", "string", "omitempty")]);
const Unknown = msg("runtime.Unknown", [
  field(1, "typeMeta", TypeMeta, "always"),
  field(2, "raw", "bytes", "ptr"),
  field(3, "contentEncoding", "string", "always"),
  field(4, "contentType", "string", "always"),
]);

// k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto
const OwnerReference = msg("meta.v1.OwnerReference", [
  field(5, "apiVersion", "string", "always"),
  field(1, "kind", "string", "always"),
  field(3, "name", "string", "always"),
  field(4, "uid", "string", "always"),
  field(6, "controller", "bool", "ptr"),
  field(7, "blockOwnerDeletion", "bool", "ptr"),
]);

const ManagedFieldsEntry = msg("meta.v1.ManagedFieldsEntry", [
  field(1, "manager", "string", "omitempty"),
  field(2, "operation", "string", "omitempty"),
  field(3, "apiVersion", "string", "omitempty"),
  field(4, "time", "time", "ptr"),
  field(6, "fieldsType", "string", "omitempty"),
  field(7, "fieldsV1", "fieldsV1", "ptr"),
  field(8, "subresource", "string", "omitempty"),
]);

const ObjectMeta = msg("meta.v1.ObjectMeta", [
  field(1, "name", "string", "omitempty"),
  field(2, "generateName", "string", "omitempty"),
  field(3, "namespace", "string", "omitempty"),
  field(4, "selfLink", "string", "omitempty"),
  field(5, "uid", "string", "omitempty"),
  field(6, "resourceVersion", "string", "omitempty"),
  field(7, "generation", "int64", "omitempty"),
  field(8, "creationTimestamp", "time", "always"),
  field(9, "deletionTimestamp", "time", "ptr"),
  field(10, "deletionGracePeriodSeconds", "int64", "ptr"),
  field(11, "labels", "map<string,string>", "omitempty"),
  field(12, "annotations", "map<string,string>", "omitempty"),
  field(13, "ownerReferences", OwnerReference, "omitempty", true),
  field(14, "finalizers", "string", "omitempty", true),
  field(17, "managedFields", ManagedFieldsEntry, "omitempty", true),
]);

const Preconditions = msg("meta.v1.Preconditions", [
  field(1, "uid", "string", "ptr"),
  field(2, "resourceVersion", "string", "ptr"),
]);

const DeleteOptions = msg("meta.v1.DeleteOptions", [
  field(1, "gracePeriodSeconds", "int64", "ptr"),
  field(2, "preconditions", Preconditions, "ptr"),
  field(3, "orphanDependents", "bool", "ptr"),
  field(4, "propagationPolicy", "string", "ptr"),
  field(5, "dryRun", "string", "omitempty", true),
]);

// k8s.io/api/core/v1/generated.proto
const NamespaceSpec = msg("core.v1.NamespaceSpec", [field(1, "finalizers", "string", "omitempty", true)]);
const NamespaceCondition = msg("core.v1.NamespaceCondition", [
  field(1, "type", "string", "always"),
  field(2, "status", "string", "always"),
  field(4, "lastTransitionTime", "time", "always"),
  field(5, "reason", "string", "omitempty"),
  field(6, "message", "string", "omitempty"),
]);
const NamespaceStatus = msg("core.v1.NamespaceStatus", [
  field(1, "phase", "string", "omitempty"),
  field(2, "conditions", NamespaceCondition, "omitempty", true),
]);
const Namespace = msg("core.v1.Namespace", [
  field(1, "metadata", ObjectMeta, "always"),
  field(2, "spec", NamespaceSpec, "always"),
  field(3, "status", NamespaceStatus, "always"),
]);

const Secret = msg("core.v1.Secret", [
  field(1, "metadata", ObjectMeta, "always"),
  field(5, "immutable", "bool", "ptr"),
  field(2, "data", "map<string,bytes>", "omitempty"),
  field(4, "stringData", "map<string,string>", "omitempty"),
  field(3, "type", "string", "omitempty"),
]);

const ConfigMap = msg("core.v1.ConfigMap", [
  field(1, "metadata", ObjectMeta, "always"),
  field(4, "immutable", "bool", "ptr"),
  field(2, "data", "map<string,string>", "omitempty"),
  field(3, "binaryData", "map<string,bytes>", "omitempty"),
]);

const ObjectReference = msg("core.v1.ObjectReference", [
  field(1, "kind", "string", "omitempty"),
  field(2, "namespace", "string", "omitempty"),
  field(3, "name", "string", "omitempty"),
  field(4, "uid", "string", "omitempty"),
  field(5, "apiVersion", "string", "omitempty"),
  field(6, "resourceVersion", "string", "omitempty"),
  field(7, "fieldPath", "string", "omitempty"),
]);
const EventSource = msg("core.v1.EventSource", [field(1, "component", "string", "omitempty"), field(2, "host", "string", "omitempty")]);
const EventSeries = msg("core.v1.EventSeries", [
  field(1, "count", "int32", "omitempty"),
  field(2, "lastObservedTime", "microtime", "always"),
]);
const Event = msg("core.v1.Event", [
  field(1, "metadata", ObjectMeta, "always"),
  field(2, "involvedObject", ObjectReference, "always"),
  field(3, "reason", "string", "omitempty"),
  field(4, "message", "string", "omitempty"),
  field(5, "source", EventSource, "always"),
  field(6, "firstTimestamp", "time", "always"),
  field(7, "lastTimestamp", "time", "always"),
  field(8, "count", "int32", "omitempty"),
  field(9, "type", "string", "omitempty"),
  field(10, "eventTime", "microtime", "always"),
  field(11, "series", EventSeries, "ptr"),
  field(12, "action", "string", "omitempty"),
  field(13, "related", ObjectReference, "ptr"),
  field(14, "reportingComponent", "string", "always"),
  field(15, "reportingInstance", "string", "always"),
]);

// k8s.io/api/coordination/v1/generated.proto
const LeaseSpec = msg("coordination.v1.LeaseSpec", [
  field(1, "holderIdentity", "string", "ptr"),
  field(2, "leaseDurationSeconds", "int32", "ptr"),
  field(3, "acquireTime", "microtime", "ptr"),
  field(4, "renewTime", "microtime", "ptr"),
  field(5, "leaseTransitions", "int32", "ptr"),
  field(6, "strategy", "string", "ptr"),
  field(7, "preferredHolder", "string", "ptr"),
]);
const Lease = msg("coordination.v1.Lease", [field(1, "metadata", ObjectMeta, "always"), field(2, "spec", LeaseSpec, "always")]);

/** Top-level kinds by apiVersion and kind. */
const kinds: Record<string, MsgDef> = {
  "v1/Namespace": Namespace,
  "v1/Secret": Secret,
  "v1/ConfigMap": ConfigMap,
  "v1/Event": Event,
  "coordination.k8s.io/v1/Lease": Lease,
};

function kindDef(apiVersion: string, kind: string): MsgDef | undefined {
  // metav1.DeleteOptions is registered into every group version (and meta.k8s.io/v1).
  if (kind === "DeleteOptions" && /^([a-z0-9.-]+\/)?v1$/.test(apiVersion)) return DeleteOptions;
  return Object.prototype.hasOwnProperty.call(kinds, `${apiVersion}/${kind}`) ? kinds[`${apiVersion}/${kind}`] : undefined;
}

// ---------------------------------------------------------------------------
// Wire reading.

const utf8 = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

class Reader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    throw new Error("varint too long");
  }

  bytes(): Uint8Array {
    const len = Number(this.varint());
    if (len > this.buf.length - this.pos) throw new Error("truncated length-delimited field");
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new Error(`unsupported wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (n > this.buf.length - this.pos) throw new Error("truncated fixed-width field");
    this.pos += n;
  }
}

function isVarintType(t: FieldType): boolean {
  return t === "int32" || t === "int64" || t === "bool";
}

function toSafeNumber(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new Error(`integer ${v} is out of the JSON-safe range`);
  }
  return Number(v);
}

/** Decodes a metav1.Time / MicroTime message; null for the zero time (an empty message, as Go writes it). */
function decodeTime(buf: Uint8Array, micro: boolean): string | null {
  if (buf.length === 0) return null;
  const r = new Reader(buf);
  let seconds = 0n;
  let nanos = 0n;
  while (!r.done) {
    const tag = r.varint();
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (no === 1 && wire === 0) seconds = BigInt.asIntN(64, r.varint());
    else if (no === 2 && wire === 0) nanos = BigInt.asIntN(32, r.varint());
    else r.skip(wire);
  }
  return formatTime(toSafeNumber(seconds), Number(nanos), micro);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

/** Go's `t.UTC().Format(time.RFC3339)` (metav1.Time) or RFC3339 with six fractional digits (metav1.MicroTime). */
function formatTime(seconds: number, nanos: number, micro: boolean): string {
  const d = new Date(seconds * 1000);
  if (Number.isNaN(d.getTime())) throw new Error(`time ${seconds}s is out of range`);
  const base =
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}` +
    `T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}`;
  return micro ? `${base}.${pad(Math.floor(nanos / 1000), 6)}Z` : `${base}Z`;
}

const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** Parses an RFC3339 time into Unix seconds and nanoseconds. */
function parseTime(s: string): { seconds: number; nanos: number } {
  const m = rfc3339.exec(s);
  if (!m) throw new Error(`invalid RFC3339 time ${JSON.stringify(s)}`);
  const d = new Date(0);
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  let seconds = d.getTime() / 1000;
  const zone = m[8];
  if (zone !== "Z" && zone !== "z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    seconds -= sign * (Number(zone.slice(1, 3)) * 3600 + Number(zone.slice(4, 6)) * 60);
  }
  const frac = m[7] ? m[7].slice(1) : "";
  const nanos = frac === "" ? 0 : Number(frac.slice(0, 9).padEnd(9, "0"));
  return { seconds, nanos };
}

function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

function decodeMapEntry(buf: Uint8Array, bytesValue: boolean): [string, string] {
  const r = new Reader(buf);
  let key = "";
  let value = "";
  while (!r.done) {
    const tag = r.varint();
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (no === 1 && wire === 2) key = utf8.decode(r.bytes());
    else if (no === 2 && wire === 2) value = bytesValue ? base64(r.bytes()) : utf8.decode(r.bytes());
    else r.skip(wire);
  }
  return [key, value];
}

/** Decodes one field value from its wire form. */
function decodeValue(f: FieldDef, r: Reader, wire: number): unknown {
  const t = f.type;
  if (isVarintType(t)) {
    if (wire !== 0) throw new Error(`field ${f.name}: wire type ${wire}, want varint`);
    const v = r.varint();
    if (t === "bool") return v !== 0n;
    if (t === "int32") return Number(BigInt.asIntN(32, v));
    return toSafeNumber(BigInt.asIntN(64, v));
  }
  if (wire !== 2) throw new Error(`field ${f.name}: wire type ${wire}, want length-delimited`);
  const b = r.bytes();
  if (typeof t === "object") return decodeMessage(t, b);
  switch (t) {
    case "string":
      return utf8.decode(b);
    case "bytes":
      return base64(b);
    case "time":
      return decodeTime(b, false);
    case "microtime":
      return decodeTime(b, true);
    case "fieldsV1": {
      // FieldsV1 { bytes Raw = 1 }; its JSON is the raw JSON itself.
      const fr = new Reader(b);
      let raw: Uint8Array | undefined;
      while (!fr.done) {
        const tag = fr.varint();
        if (tag === 0x0an) raw = fr.bytes();
        else fr.skip(Number(tag & 7n));
      }
      return raw === undefined || raw.length === 0 ? null : (JSON.parse(utf8.decode(raw)) as unknown);
    }
    case "map<string,string>":
      return decodeMapEntry(b, false);
    case "map<string,bytes>":
      return decodeMapEntry(b, true);
    default:
      throw new Error(`field ${f.name}: unexpected type`);
  }
}

function isMapType(t: FieldType): t is MapType {
  return t === "map<string,string>" || t === "map<string,bytes>";
}

/** The zero value Go's JSON writes for an unset `always` field. */
function zeroJson(t: FieldType): unknown {
  if (typeof t === "object") return {};
  switch (t) {
    case "string":
      return "";
    case "int32":
    case "int64":
      return 0;
    case "bool":
      return false;
    case "map<string,string>":
    case "map<string,bytes>":
      return {};
    default:
      return null;
  }
}

function isZeroJson(v: unknown): boolean {
  if (v === "" || v === 0 || v === false || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === "object" && v !== null && Object.keys(v).length === 0;
}

function decodeMessage(def: MsgDef, buf: Uint8Array): Json {
  const byNo = new Map(def.fields.map((f) => [f.no, f] as const));
  const values = new Map<number, unknown>();
  const r = new Reader(buf);
  while (!r.done) {
    const tag = r.varint();
    const no = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (no === 0) throw new Error("invalid field number 0");
    const f = byNo.get(no);
    if (!f) {
      r.skip(wire);
      continue;
    }
    const v = decodeValue(f, r, wire);
    if (isMapType(f.type)) {
      const entries = (values.get(no) as Record<string, string> | undefined) ?? {};
      const [k, val] = v as [string, string];
      entries[k] = val;
      values.set(no, entries);
    } else if (f.repeated) {
      const list = (values.get(no) as unknown[] | undefined) ?? [];
      list.push(v);
      values.set(no, list);
    } else {
      values.set(no, v); // last one wins, as in protobuf
    }
  }
  const out: Json = {};
  for (const f of def.fields) {
    const present = values.has(f.no);
    let v = values.get(f.no);
    if (isMapType(f.type) && present) v = sortKeys(v as Record<string, string>);
    if (!present) {
      if (f.presence === "always") out[f.name] = f.repeated ? [] : zeroJson(f.type);
      continue;
    }
    if (f.presence === "omitempty" && isZeroJson(v)) continue;
    out[f.name] = v;
  }
  return out;
}

function sortKeys(m: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(m).sort()) out[k] = m[k];
  return out;
}

/**
 * Decodes a Kubernetes protobuf request body (magic + runtime.Unknown) into the
 * JSON form of the object, as Go's JSON encoding of that object would look.
 * Throws {@link UnsupportedProtobufKind} for kinds it has no schema for and an
 * Error for malformed bodies.
 */
export function decodeKubeProtobuf(body: Uint8Array): Record<string, unknown> {
  if (body.length < kubeProtobufMagic.length || !kubeProtobufMagic.every((b, i) => body[i] === b)) {
    throw new Error("not a Kubernetes protobuf body: missing the k8s\\0 prefix");
  }
  const unknown = decodeMessage(Unknown, body.subarray(kubeProtobufMagic.length));
  const typeMeta = unknown.typeMeta as Json;
  const apiVersion = typeof typeMeta.apiVersion === "string" ? typeMeta.apiVersion : "";
  const kind = typeof typeMeta.kind === "string" ? typeMeta.kind : "";
  if (unknown.contentEncoding !== "") throw new Error(`unsupported protobuf content encoding ${JSON.stringify(unknown.contentEncoding)}`);
  if (unknown.contentType !== "" && unknown.contentType !== kubeProtobufMediaType) {
    throw new Error(`unsupported protobuf content type ${JSON.stringify(unknown.contentType)}`);
  }
  const def = kindDef(apiVersion, kind);
  if (!def) throw new UnsupportedProtobufKind(apiVersion, kind);
  const raw = typeof unknown.raw === "string" ? Buffer.from(unknown.raw, "base64") : new Uint8Array(0);
  return { apiVersion, kind, ...decodeMessage(def, raw) };
}

// ---------------------------------------------------------------------------
// Wire writing.

function asString(v: unknown, name: string): string {
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new Error(`${name}: want a string`);
  return v;
}

function asInteger(v: unknown, name: string): bigint {
  if (v === undefined || v === null) return 0n;
  if (typeof v !== "number" || !Number.isInteger(v)) throw new Error(`${name}: want an integer`);
  return BigInt(v);
}

/** metav1.Time / MicroTime as gogo writes it: nothing for the zero time, else seconds and nanos. */
function encodeTime(v: unknown, name: string, micro: boolean): Uint8Array {
  if (v === undefined || v === null) return new Uint8Array(0);
  const { seconds, nanos } = parseTime(asString(v, name));
  const w = new ProtobufWriter();
  w.varintField(1, BigInt(seconds));
  // JSON carries seconds (Time) or microseconds (MicroTime); that is all Go keeps after decoding it.
  w.varintField(2, micro ? BigInt(Math.floor(nanos / 1000) * 1000) : 0n);
  return w.finish();
}

function encodeValue(w: ProtobufWriter, f: FieldDef, v: unknown): void {
  const t = f.type;
  if (typeof t === "object") {
    if (v !== undefined && v !== null && (typeof v !== "object" || Array.isArray(v))) throw new Error(`${f.name}: want an object`);
    w.bytesField(f.no, encodeMessage(t, (v ?? {}) as Json));
    return;
  }
  switch (t) {
    case "string":
      w.bytesField(f.no, utf8Encoder.encode(asString(v, f.name)));
      return;
    case "bytes":
      w.bytesField(f.no, Buffer.from(asString(v, f.name), "base64"));
      return;
    case "bool":
      if (v !== undefined && v !== null && typeof v !== "boolean") throw new Error(`${f.name}: want a boolean`);
      w.varintField(f.no, v === true ? 1n : 0n);
      return;
    case "int32":
    case "int64":
      w.varintField(f.no, asInteger(v, f.name));
      return;
    case "time":
    case "microtime":
      w.bytesField(f.no, encodeTime(v, f.name, t === "microtime"));
      return;
    case "fieldsV1": {
      const inner = new ProtobufWriter();
      if (v !== undefined && v !== null) inner.bytesField(1, utf8Encoder.encode(JSON.stringify(v)));
      w.bytesField(f.no, inner.finish());
      return;
    }
    case "map<string,string>":
    case "map<string,bytes>": {
      if (v === undefined || v === null) return;
      if (typeof v !== "object" || Array.isArray(v)) throw new Error(`${f.name}: want an object`);
      const m = v as Record<string, unknown>;
      for (const k of Object.keys(m).sort()) {
        const entry = new ProtobufWriter();
        entry.bytesField(1, utf8Encoder.encode(k));
        const s = asString(m[k], `${f.name}.${k}`);
        entry.bytesField(2, t === "map<string,bytes>" ? Buffer.from(s, "base64") : utf8Encoder.encode(s));
        w.bytesField(f.no, entry.finish());
      }
      return;
    }
  }
}

/** Encodes like gogo: fields by ascending number, value fields always, pointer fields when set. */
function encodeMessage(def: MsgDef, obj: Json): Uint8Array {
  const w = new ProtobufWriter();
  for (const f of [...def.fields].sort((a, b) => a.no - b.no)) {
    const v = obj[f.name];
    if (f.repeated) {
      if (v === undefined || v === null) continue;
      if (!Array.isArray(v)) throw new Error(`${f.name}: want a list`);
      for (const item of v as unknown[]) encodeValue(w, f, item);
      continue;
    }
    if (f.presence === "ptr" && (v === undefined || v === null)) continue;
    encodeValue(w, f, v);
  }
  return w.finish();
}

/**
 * Encodes a JSON object of a supported kind as Kubernetes protobuf (magic +
 * runtime.Unknown). Throws {@link UnsupportedProtobufKind} for other kinds.
 */
export function encodeKubeProtobuf(obj: Record<string, unknown>): Uint8Array {
  const apiVersion = typeof obj.apiVersion === "string" ? obj.apiVersion : "";
  const kind = typeof obj.kind === "string" ? obj.kind : "";
  const def = kindDef(apiVersion, kind);
  if (!def) throw new UnsupportedProtobufKind(apiVersion, kind);
  const raw = encodeMessage(def, obj);
  const unknown = encodeMessage(Unknown, {
    typeMeta: { apiVersion, kind },
    raw: Buffer.from(raw).toString("base64"),
    contentEncoding: "",
    contentType: "",
  });
  const out = new Uint8Array(kubeProtobufMagic.length + unknown.length);
  out.set(kubeProtobufMagic, 0);
  out.set(unknown, kubeProtobufMagic.length);
  return out;
}
