/**
 * Emits docs/api-reference.md from the schemas, so the reference never drifts.
 */
import type { ResourceDefinition, SchemaCatalog, SchemaNode } from "../../lib/api/schemas.js";
import { markdownHeader } from "./output.js";

function isObject(v: unknown): v is SchemaNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

function typeLabel(node: SchemaNode): string {
  if (node["x-kubernetes-int-or-string"] === true) return "int or string";
  if (node.type === "array") {
    const items = isObject(node.items) ? node.items : {};
    const listType = typeof node["x-kubernetes-list-type"] === "string" ? ` (${node["x-kubernetes-list-type"]})` : "";
    return `[]${typeLabel(items)}${listType}`;
  }
  if (node.type === "object") {
    if (node["x-kubernetes-preserve-unknown-fields"] === true && !isObject(node.properties)) return "object (free-form)";
    if (isObject(node.additionalProperties)) return `map[string]${typeLabel(node.additionalProperties)}`;
    return "object";
  }
  const fmt = typeof node.format === "string" ? ` (${node.format})` : "";
  return `${String(node.type ?? "any")}${fmt}`;
}

function constraints(node: SchemaNode): string {
  const out: string[] = [];
  if (Array.isArray(node.enum)) out.push(`one of ${node.enum.map((v) => `\`${String(v)}\``).join(", ")}`);
  if (node.default !== undefined) out.push(`default \`${JSON.stringify(node.default)}\``);
  if (typeof node.minimum === "number") out.push(`min ${node.minimum}`);
  if (typeof node.maximum === "number") out.push(`max ${node.maximum}`);
  if (typeof node.minLength === "number") out.push(`min length ${node.minLength}`);
  if (typeof node.maxLength === "number") out.push(`max length ${node.maxLength}`);
  if (typeof node.minItems === "number") out.push(`min items ${node.minItems}`);
  if (typeof node.maxItems === "number") out.push(`max items ${node.maxItems}`);
  if (typeof node.pattern === "string") out.push(`pattern \`${node.pattern}\``);
  if (Array.isArray(node["x-kubernetes-list-map-keys"])) out.push(`keyed by ${node["x-kubernetes-list-map-keys"].join(", ")}`);
  return out.join("; ");
}

function rows(node: SchemaNode, prefix: string, out: string[]): void {
  const props = isObject(node.properties) ? node.properties : {};
  const required = new Set(Array.isArray(node.required) ? node.required : []);
  for (const [name, child] of Object.entries(props)) {
    if (!isObject(child)) continue;
    const path = `${prefix}${name}`;
    const desc = typeof child.description === "string" ? child.description : "";
    const extra = constraints(child);
    out.push(
      `| \`${path}\` | ${cell(typeLabel(child))} | ${required.has(name) ? "yes" : ""} | ${cell(desc)}${extra === "" ? "" : ` <br>*${cell(extra)}*`} |`,
    );
    if (isObject(child.properties)) rows(child, `${path}.`, out);
    const items = child.items;
    if (child.type === "array" && isObject(items) && isObject(items.properties)) rows(items, `${path}[].`, out);
  }
}

function fieldTable(node: SchemaNode | undefined): string {
  if (node === undefined) return "";
  const out = ["| Field | Type | Required | Description |", "|---|---|---|---|"];
  rows(node, "", out);
  return out.join("\n");
}

function kindSection(res: ResourceDefinition): string {
  const cols = res.printerColumns.map((c) => `\`${c.name}\``).join(", ");
  return [
    `## ${res.kind}`,
    "",
    res.description,
    "",
    `- API version: \`${res.group}/${res.version}\``,
    `- Scope: ${res.scope === "Namespaced" ? "namespaced (an organization)" : "cluster"}`,
    `- Resource: \`${res.plural}\` (singular \`${res.singular}\`${res.shortNames.length > 0 ? `, short names ${res.shortNames.map((s) => `\`${s}\``).join(", ")}` : ""}; categories ${res.categories.map((c) => `\`${c}\``).join(", ")})`,
    `- \`kubectl get\` columns: ${cols}`,
    `- Source: \`${res.source}\``,
    "",
    `### ${res.kind} spec`,
    "",
    fieldTable(res.spec),
    "",
    `### ${res.kind} status`,
    "",
    fieldTable(res.status),
    "",
  ].join("\n");
}

/** The contents of docs/api-reference.md. */
export function generateDocs(catalog: SchemaCatalog): Map<string, string> {
  const fabric = catalog.resources.filter((r) => r.fabric);
  const core = catalog.resources.filter((r) => !r.fabric);
  const sources = catalog.sources.filter((s) => !s.startsWith("schemas/core/"));
  const body = [
    "# Access Fabric API reference",
    "",
    "Group `accessfabric.io`, version `v1alpha1`. Every status carries `observedGeneration` and `conditions`",
    "(`metav1.Condition`, keyed by `type`) with a summary `Ready` condition. `kubectl explain <kind>.<field>` shows the same",
    "descriptions.",
    "",
    "| Kind | Resource | Short names | Scope |",
    "|---|---|---|---|",
    ...fabric.map((r) => `| [${r.kind}](#${r.kind.toLowerCase()}) | \`${r.plural}\` | ${r.shortNames.join(", ")} | ${r.scope} |`),
    "",
    "The server also serves these built-in kinds (schemas in `schemas/core/`):",
    "",
    ...core.map((r) => `- \`${r.group === "" ? "" : `${r.group}/`}${r.version}\` ${r.kind} (\`${r.plural}\`, ${r.scope === "Namespaced" ? "namespaced" : "cluster"})`),
    "",
    ...fabric.map(kindSection),
  ].join("\n");
  return new Map([["docs/api-reference.md", `${markdownHeader(sources)}\n${body}`]]);
}
