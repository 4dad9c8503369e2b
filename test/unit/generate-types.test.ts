/**
 * The type generator (hack/generate/typescript.ts) on the real schema
 * catalog plus a kind whose status has a field `update` and a list
 * `updates` of a different shape: both ask for the type name
 * `<Kind>StatusUpdate`. Each gets its own interface (the first the plain
 * name, the next `…2`), the same on every run; a name code refers to as
 * written (a kind's Spec) taken by a field's type fails the generator with
 * a message naming it.
 */
import assert from "node:assert/strict";
import { generateTypes } from "../../hack/generate/typescript.js";
import { loadCatalog, type ResourceDefinition, type SchemaCatalog } from "../../lib/api/schemas.js";

function withKind(kind: string, status: ResourceDefinition["status"], spec: ResourceDefinition["spec"] = { type: "object", properties: {} }): SchemaCatalog {
  const catalog = loadCatalog();
  const base = catalog.resources.find((r) => r.fabric);
  assert.ok(base !== undefined);
  const extra: ResourceDefinition = { ...base, kind, listKind: `${kind}List`, plural: `${kind.toLowerCase()}s`, singular: kind.toLowerCase(), shortNames: [], spec, status };
  return { ...catalog, resources: [...catalog.resources, extra] };
}

const types = (catalog: SchemaCatalog): string => [...generateTypes(catalog).values()].join("\n");

/** The body of `export interface <name> { … }` in the generated source. */
function body(source: string, name: string): string {
  const m = new RegExp(`export interface ${name} \\{\\n([\\s\\S]*?)\\n\\}\\n`).exec(source);
  assert.ok(m !== null, `no interface ${name}`);
  return m[1] ?? "";
}

describe("type generator: colliding type names", () => {
  const status = {
    type: "object",
    properties: {
      update: { type: "object", properties: { phase: { type: "string" } } },
      updates: { type: "array", items: { type: "object", properties: { serial: { type: "integer" } } } },
    },
  };

  it("gives two different schemas asking for one name two interfaces, deterministically", () => {
    const out = types(withKind("Widget", status));
    assert.match(body(out, "WidgetStatus"), /update\?: WidgetStatusUpdate;/);
    assert.match(body(out, "WidgetStatus"), /updates\?: WidgetStatusUpdate2\[\];/);
    assert.match(body(out, "WidgetStatusUpdate"), /phase\?: string;/);
    assert.match(body(out, "WidgetStatusUpdate2"), /serial\?: number;/);
    assert.equal(types(withKind("Widget", status)), out, "the same input gives the same output");
  });

  it("reuses one interface when both ask for the same shape", () => {
    const same = { type: "object", properties: { update: { type: "object", properties: { serial: { type: "integer" } } }, updates: { type: "array", items: { type: "object", properties: { serial: { type: "integer" } } } } } };
    const out = types(withKind("Gadget", same));
    assert.match(body(out, "GadgetStatus"), /updates\?: GadgetStatusUpdate\[\];/);
    assert.doesNotMatch(out, /GadgetStatusUpdate2/);
  });

  it("fails, naming the type, when a field's type takes a name code refers to as written", () => {
    // Gizmo's status field "spec" takes GizmoStatusSpec, the name kind GizmoStatus needs for its Spec.
    const catalog = withKind("Gizmo", { type: "object", properties: { spec: { type: "object", properties: { a: { type: "string" } } } } });
    const base = catalog.resources.find((r) => r.kind === "Gizmo");
    assert.ok(base !== undefined);
    const clash: ResourceDefinition = { ...base, kind: "GizmoStatus", listKind: "GizmoStatusList", spec: { type: "object", properties: { b: { type: "integer" } } } };
    assert.throws(() => generateTypes({ ...catalog, resources: [...catalog.resources, clash] }), /the type name GizmoStatusSpec is already taken by another schema's type/);
  });
});
