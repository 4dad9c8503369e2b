/**
 * Server-side printing: meta.k8s.io Tables as kube-apiserver builds them.
 * CRD-style columns follow apiextensions-apiserver's table convertor (a
 * `Name` column, then the additionalPrinterColumns, `date` cells rendered
 * with ShortHumanDuration); the built-in kinds follow
 * pkg/printers/internalversion (ages with HumanDuration). Pure: the caller
 * supplies the objects, the list metadata and the clock.
 */

import { compileJsonPath, formatJsonPathValue, type CompiledJsonPath } from "./jsonpath.js";

/** An object as stored: at least `metadata`. */
export interface Obj {
  apiVersion?: string;
  kind?: string;
  metadata?: Record<string, unknown>;
  [key: string]: unknown;
}

/**
 * A printer column: the shape of a CRD's additionalPrinterColumns entry.
 * Built-in kinds compute some cells instead of reading a JSONPath; those
 * carry `cell`, and their `jsonPath` only documents the source.
 */
export interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
  /** Computes the cell (built-in kinds); overrides `jsonPath` and `type` handling. */
  cell?: (obj: Obj, now: Date) => unknown;
}

/** metav1.TableColumnDefinition. */
export interface TableColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

/** metav1.TableRow. `object` is null for includeObject=None, as kube emits it. */
export interface TableRow {
  cells: unknown[];
  object: Record<string, unknown> | null;
}

/** metav1.ListMeta as a Table carries it. */
export interface TableListMeta {
  resourceVersion?: string;
  continue?: string;
  remainingItemCount?: number;
}

/** A meta.k8s.io Table. */
export interface Table {
  kind: "Table";
  apiVersion: "meta.k8s.io/v1" | "meta.k8s.io/v1beta1";
  metadata: TableListMeta;
  columnDefinitions: TableColumnDefinition[];
  rows: TableRow[];
}

/** Options of {@link toTable}. */
export interface TableOptions {
  /** `includeObject` query parameter; kube's default is Metadata. */
  includeObject: "None" | "Metadata" | "Object";
  listMeta: TableListMeta;
  now: Date;
  /** Table version the client asked for; default v1. */
  version?: "v1" | "v1beta1";
  /**
   * Leave columnDefinitions empty: kube does so for every watch event after
   * the first one (headers are sent once per watch).
   */
  noHeaders?: boolean;
}

/** ObjectMeta's swagger doc for `name`, kube's description of the Name column. */
export const nameDescription =
  "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/** ObjectMeta's swagger doc for `creationTimestamp`, kube's description of Age. */
export const creationTimestampDescription =
  "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/**
 * The columns apiextensions-apiserver serves for a CRD version without
 * additionalPrinterColumns (serveDefaultColumnsIfEmpty): Age only, after
 * the implicit Name column.
 */
export const defaultCrdColumns: readonly PrinterColumn[] = [
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp", description: creationTimestampDescription },
];

/** k8s.io/apimachinery duration.ShortHumanDuration, for a span in milliseconds. */
export function shortHumanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.trunc(ms / 3_600_000);
  if (hours < 24) return `${hours}h`;
  if (hours < 24 * 365) return `${Math.trunc(hours / 24)}d`;
  return `${Math.trunc(hours / 24 / 365)}y`;
}

/** k8s.io/apimachinery duration.HumanDuration (2-3 significant figures), for milliseconds. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.trunc(ms / 3_600_000);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.trunc(hours / 24)}d` : `${Math.trunc(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.trunc(hours / 24) % 365;
    const y = Math.trunc(hours / 24 / 365);
    return dy === 0 ? `${y}y` : `${y}y${dy}d`;
  }
  return `${Math.trunc(hours / 24 / 365)}y`;
}

/** Parses an RFC 3339 timestamp as metav1.Time does; undefined when it is not one. */
function parseRfc3339(s: string): Date | undefined {
  if (!/^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s)) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** kubectl's translateTimestampSince: HumanDuration since `ts`, `<unknown>` when unset. */
export function timestampSince(ts: unknown, now: Date): string {
  if (typeof ts !== "string" || ts === "") return "<unknown>";
  const d = parseRfc3339(ts);
  if (d === undefined) return "<unknown>";
  return humanDuration(now.getTime() - d.getTime());
}

/** The CRD convertor's cellForJSONValue. */
function cellForJsonValue(type: string, value: unknown, now: Date): unknown {
  if (value === null || value === undefined) return null;
  switch (type) {
    case "integer":
      return typeof value === "number" ? Math.trunc(value) : null;
    case "number":
      return typeof value === "number" ? value : null;
    case "boolean":
      return typeof value === "boolean" ? value : null;
    case "string":
      return typeof value === "string" ? value : null;
    case "date": {
      if (typeof value !== "string") return null;
      if (value === "" || value === "null") return "<unknown>";
      const d = parseRfc3339(value);
      if (d === undefined) return "<invalid>";
      return shortHumanDuration(now.getTime() - d.getTime());
    }
    default:
      return null;
  }
}

function metadataOf(obj: Obj): Record<string, unknown> {
  const m = obj.metadata;
  return m !== undefined && m !== null && typeof m === "object" ? m : {};
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function record(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

const ageColumn: PrinterColumn = {
  name: "Age",
  type: "string",
  jsonPath: ".metadata.creationTimestamp",
  description: creationTimestampDescription,
  cell: (o, now) => timestampSince(metadataOf(o)["creationTimestamp"], now),
};

const nameColumnForCore: PrinterColumn = {
  name: "Name",
  type: "string",
  format: "name",
  jsonPath: ".metadata.name",
  description: nameDescription,
  cell: (o) => str(metadataOf(o)["name"]),
};

function eventFirstSeen(o: Obj, now: Date): string {
  const first = o["firstTimestamp"];
  if (typeof first === "string" && first !== "") return timestampSince(first, now);
  return timestampSince(o["eventTime"], now);
}

function eventLastSeen(o: Obj, now: Date): string {
  const series = o["series"];
  if (series !== undefined && series !== null) return timestampSince(record(series)["lastObservedTime"], now);
  const last = o["lastTimestamp"];
  if (typeof last === "string" && last !== "") return timestampSince(last, now);
  return eventFirstSeen(o, now);
}

/**
 * Columns of the built-in kinds this server serves, by plural resource name,
 * as pkg/printers/internalversion defines them (the server prints wide:
 * priority-1 columns are included and kubectl hides them without -o wide).
 * The `Name` column is part of each list; {@link toTable} does not add one.
 */
export const coreColumns: Record<string, PrinterColumn[]> = {
  namespaces: [
    nameColumnForCore,
    {
      name: "Status",
      type: "string",
      jsonPath: ".status.phase",
      description: "The status of the namespace",
      cell: (o) => str(record(o["status"])["phase"]),
    },
    ageColumn,
  ],
  secrets: [
    nameColumnForCore,
    {
      name: "Type",
      type: "string",
      jsonPath: ".type",
      description:
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
      cell: (o) => str(o["type"]),
    },
    {
      name: "Data",
      type: "string",
      jsonPath: ".data",
      description:
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
      cell: (o) => Object.keys(record(o["data"])).length,
    },
    ageColumn,
  ],
  configmaps: [
    nameColumnForCore,
    {
      name: "Data",
      type: "string",
      jsonPath: ".data",
      description:
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
      cell: (o) => Object.keys(record(o["data"])).length + Object.keys(record(o["binaryData"])).length,
    },
    ageColumn,
  ],
  leases: [
    nameColumnForCore,
    {
      name: "Holder",
      type: "string",
      jsonPath: ".spec.holderIdentity",
      description: "holderIdentity contains the identity of the holder of a current lease.",
      cell: (o) => str(record(o["spec"])["holderIdentity"]),
    },
    ageColumn,
  ],
  events: [
    {
      name: "Last Seen",
      type: "string",
      jsonPath: ".lastTimestamp",
      description: "The time at which the most recent occurrence of this event was recorded.",
      cell: eventLastSeen,
    },
    {
      name: "Type",
      type: "string",
      jsonPath: ".type",
      description: "Type of this event (Normal, Warning), new types could be added in the future",
      cell: (o) => str(o["type"]),
    },
    {
      name: "Reason",
      type: "string",
      jsonPath: ".reason",
      description:
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
      cell: (o) => str(o["reason"]),
    },
    {
      name: "Object",
      type: "string",
      jsonPath: ".involvedObject",
      description: "The object that this event is about.",
      cell: (o) => {
        const io = record(o["involvedObject"]);
        const kind = str(io["kind"]).toLowerCase();
        const name = str(io["name"]);
        return name === "" ? kind : `${kind}/${name}`;
      },
    },
    {
      name: "Subobject",
      type: "string",
      priority: 1,
      jsonPath: ".involvedObject.fieldPath",
      description:
        'If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: "spec.containers{name}" (where "name" refers to the name of the container that triggered the event) or if no container name is specified "spec.containers[2]" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.',
      cell: (o) => str(record(o["involvedObject"])["fieldPath"]),
    },
    {
      name: "Source",
      type: "string",
      priority: 1,
      jsonPath: ".source",
      description: "The component reporting this event. Should be a short machine understandable string.",
      cell: (o) => {
        const src = record(o["source"]);
        const component = str(src["component"]) || str(o["reportingComponent"]);
        const host = str(src["host"]) || str(o["reportingInstance"]);
        if (component === "") return "<unknown>";
        return host === "" ? component : `${component}, ${host}`;
      },
    },
    {
      name: "Message",
      type: "string",
      jsonPath: ".message",
      description: "A human-readable description of the status of this operation.",
      cell: (o) => str(o["message"]).trim(),
    },
    {
      name: "First Seen",
      type: "string",
      priority: 1,
      jsonPath: ".firstTimestamp",
      description: "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
      cell: eventFirstSeen,
    },
    {
      name: "Count",
      type: "string",
      priority: 1,
      jsonPath: ".count",
      description: "The number of times this event has occurred.",
      cell: (o) => {
        const series = o["series"];
        if (series !== undefined && series !== null) {
          const c = record(series)["count"];
          return typeof c === "number" ? c : 0;
        }
        const c = o["count"];
        return typeof c === "number" && c !== 0 ? c : 1;
      },
    },
    { ...nameColumnForCore, priority: 1 },
  ],
};

interface PreparedColumn {
  readonly column: PrinterColumn;
  readonly path: CompiledJsonPath | undefined;
}

function definition(c: PrinterColumn, description: string): TableColumnDefinition {
  return {
    name: c.name,
    type: c.type,
    format: c.format ?? "",
    description,
    priority: c.priority ?? 0,
  };
}

function cellFor(p: PreparedColumn, obj: Obj, now: Date): unknown {
  const { column, path } = p;
  if (column.cell !== undefined) return column.cell(obj, now);
  if (path === undefined) return null;
  const results = path.evaluate(obj);
  // Like kube, only the first result counts ("we only support simple JSON path").
  if (results.length === 0) return null;
  const value = results[0];
  if (column.type === "string") return value === null || value === undefined ? null : formatJsonPathValue(value);
  return cellForJsonValue(column.type, value, now);
}

function rowObject(obj: Obj, opts: TableOptions): Record<string, unknown> | null {
  switch (opts.includeObject) {
    case "None":
      return null;
    case "Object":
      return obj;
    case "Metadata":
      return {
        kind: "PartialObjectMetadata",
        apiVersion: `meta.k8s.io/${opts.version ?? "v1"}`,
        metadata: metadataOf(obj),
      };
  }
}

/**
 * Builds the Table kube-apiserver returns for `objects` (a list, or one
 * object as a one-element array). A `core: true`-style column list (from
 * {@link coreColumns}) is used as is; any other list is treated as CRD
 * additionalPrinterColumns: a `Name` column is prepended and an empty list
 * becomes {@link defaultCrdColumns}.
 * @throws JsonPathError when a column's jsonPath does not parse.
 */
export function toTable(objects: readonly Obj[], columns: readonly PrinterColumn[], opts: TableOptions): Table {
  const isCore = columns.length > 0 && columns.every((c) => c.cell !== undefined);
  const prepared: PreparedColumn[] = [];
  const defs: TableColumnDefinition[] = [];
  if (isCore) {
    for (const c of columns) {
      prepared.push({ column: c, path: undefined });
      defs.push(definition(c, c.description ?? ""));
    }
  } else {
    const nameColumn: PrinterColumn = {
      name: "Name",
      type: "string",
      format: "name",
      jsonPath: ".metadata.name",
      cell: (o) => str(metadataOf(o)["name"]),
    };
    prepared.push({ column: nameColumn, path: undefined });
    defs.push(definition(nameColumn, nameDescription));
    for (const c of columns.length === 0 ? defaultCrdColumns : columns) {
      prepared.push({ column: c, path: c.cell === undefined ? compileJsonPath(c.jsonPath) : undefined });
      const desc =
        c.description !== undefined && c.description !== ""
          ? c.description
          : `Custom resource definition column (in JSONPath format): ${c.jsonPath}`;
      defs.push(definition(c, desc));
    }
  }

  const metadata: TableListMeta = {};
  if (opts.listMeta.resourceVersion !== undefined && opts.listMeta.resourceVersion !== "") {
    metadata.resourceVersion = opts.listMeta.resourceVersion;
  }
  if (opts.listMeta.continue !== undefined && opts.listMeta.continue !== "") {
    metadata.continue = opts.listMeta.continue;
  }
  if (opts.listMeta.remainingItemCount !== undefined) {
    metadata.remainingItemCount = opts.listMeta.remainingItemCount;
  }

  return {
    kind: "Table",
    apiVersion: `meta.k8s.io/${opts.version ?? "v1"}`,
    metadata,
    columnDefinitions: opts.noHeaders === true ? [] : defs,
    rows: objects.map((o) => ({
      cells: prepared.map((p) => cellFor(p, o, opts.now)),
      object: rowObject(o, opts),
    })),
  };
}

interface AcceptClause {
  type: string;
  params: Map<string, string>;
  q: number;
  index: number;
}

function parseAccept(accept: string): AcceptClause[] {
  const clauses: AcceptClause[] = [];
  accept.split(",").forEach((part, index) => {
    const [typePart, ...paramParts] = part.split(";");
    const type = (typePart ?? "").trim().toLowerCase();
    if (type === "") return;
    const params = new Map<string, string>();
    let q = 1;
    for (const p of paramParts) {
      const eq = p.indexOf("=");
      if (eq < 0) continue;
      const k = p.slice(0, eq).trim().toLowerCase();
      const v = p.slice(eq + 1).trim();
      if (k === "q") {
        const n = Number(v);
        q = Number.isFinite(n) ? n : 0;
      } else {
        params.set(k, v);
      }
    }
    if (q > 0) clauses.push({ type, params, q, index });
  });
  const specificity = (c: AcceptClause): number => (c.type === "*/*" ? 0 : c.type.endsWith("/*") ? 1 : 2);
  return clauses.sort((a, b) => b.q - a.q || specificity(b) - specificity(a) || a.index - b.index);
}

const plainTypes = new Set(["application/json", "application/yaml", "application/*", "*/*"]);

/**
 * Which meta.k8s.io Table version the Accept header negotiates, like
 * kube-apiserver: clauses in preference order (q, then specificity, then
 * position); the first one this server can serve decides. A JSON clause with
 * `as=Table;g=meta.k8s.io;v=v1|v1beta1` yields its version; a plain JSON/YAML
 * or wildcard clause yields undefined (serve the plain object or list).
 * Clauses asking for other transformations (e.g. PartialObjectMetadata) or
 * media types (protobuf) are skipped.
 */
export function tableVersion(accept: string | undefined): "v1" | "v1beta1" | undefined {
  if (accept === undefined || accept.trim() === "") return undefined;
  for (const c of parseAccept(accept)) {
    const as = c.params.get("as");
    if (as === undefined) {
      if (plainTypes.has(c.type)) return undefined;
      continue;
    }
    if (as !== "Table" || c.type !== "application/json") continue;
    if (c.params.get("g") !== "meta.k8s.io") continue;
    const v = c.params.get("v");
    if (v === "v1" || v === "v1beta1") return v;
  }
  return undefined;
}

/** True when the Accept header negotiates a meta.k8s.io Table (see {@link tableVersion}). */
export function wantsTable(accept: string | undefined): boolean {
  return tableVersion(accept) !== undefined;
}
