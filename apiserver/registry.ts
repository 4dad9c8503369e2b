/**
 * The resources the API server serves: a few core kinds that controllers and
 * kubectl need, plus every CustomResourceDefinition found in `crds/`.
 *
 * The server is generic over these definitions, the way kube-apiserver serves
 * CRDs: adding a kind to `schemas/` and running `make generate` is enough.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";

import type { PrinterColumn } from "./table.js";

export type { PrinterColumn };

/** One served resource (one plural of one group/version). */
export interface ResourceDef {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** Whether the resource has a /status subresource (status ignored on main writes). */
  statusSubresource: boolean;
  /** Whether spec-vs-status split applies (CRD semantics: everything but metadata/status is "spec"). */
  printerColumns: PrinterColumn[];
  /** openAPIV3Schema of a CRD; undefined for core kinds. */
  schema?: Record<string, unknown>;
  /** Core kinds whose top-level fields are all "spec" (no generation tracking), e.g. Secret. */
  tracksGeneration: boolean;
}

/** group/version string as used in apiVersion. */
export function groupVersion(def: { group: string; version: string }): string {
  return def.group === "" ? def.version : `${def.group}/${def.version}`;
}

/** The key that addresses a resource: group + plural. */
export function resourceKey(group: string, plural: string): string {
  return `${group}/${plural}`;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The repository's generated CRD folder. */
export const defaultCrdDir = join(here, "..", "crds");

const coreDefs: ResourceDef[] = [
  core("", "v1", "Namespace", "namespaces", false, ["ns"], { statusSubresource: true, tracksGeneration: false }),
  core("", "v1", "Secret", "secrets", true, [], { statusSubresource: false, tracksGeneration: false }),
  core("", "v1", "ConfigMap", "configmaps", true, ["cm"], { statusSubresource: false, tracksGeneration: false }),
  core("", "v1", "Event", "events", true, ["ev"], { statusSubresource: false, tracksGeneration: false }),
  core("coordination.k8s.io", "v1", "Lease", "leases", true, [], { statusSubresource: false, tracksGeneration: false }),
];

function core(
  group: string,
  version: string,
  kind: string,
  plural: string,
  namespaced: boolean,
  shortNames: string[],
  o: { statusSubresource: boolean; tracksGeneration: boolean },
): ResourceDef {
  return {
    group,
    version,
    kind,
    listKind: `${kind}List`,
    plural,
    singular: kind.toLowerCase(),
    namespaced,
    shortNames,
    categories: [],
    statusSubresource: o.statusSubresource,
    tracksGeneration: o.tracksGeneration,
    printerColumns: [],
  };
}

interface CrdDoc {
  kind?: string;
  spec?: {
    group: string;
    scope: "Namespaced" | "Cluster";
    names: { kind: string; listKind?: string; plural: string; singular?: string; shortNames?: string[]; categories?: string[] };
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      schema?: { openAPIV3Schema?: Record<string, unknown> };
      subresources?: { status?: object };
      additionalPrinterColumns?: PrinterColumn[];
    }>;
  };
}

/** Reads the CustomResourceDefinitions in a folder into resource definitions. */
export function loadCrds(dir: string = defaultCrdDir): ResourceDef[] {
  const defs: ResourceDef[] = [];
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".yaml") || f.endsWith(".yml")).sort();
  } catch (cause) {
    throw new Error(`reading CRDs from ${dir}`, { cause });
  }
  for (const file of files) {
    const doc = parseYaml(readFileSync(join(dir, file), "utf8")) as CrdDoc;
    if (doc?.kind !== "CustomResourceDefinition" || !doc.spec) continue;
    const { spec } = doc;
    for (const v of spec.versions) {
      if (!v.served) continue;
      defs.push({
        group: spec.group,
        version: v.name,
        kind: spec.names.kind,
        listKind: spec.names.listKind ?? `${spec.names.kind}List`,
        plural: spec.names.plural,
        singular: spec.names.singular ?? spec.names.kind.toLowerCase(),
        namespaced: spec.scope === "Namespaced",
        shortNames: spec.names.shortNames ?? [],
        categories: spec.names.categories ?? [],
        statusSubresource: v.subresources?.status !== undefined,
        tracksGeneration: true,
        printerColumns: v.additionalPrinterColumns ?? [],
        schema: v.schema?.openAPIV3Schema,
      });
    }
  }
  return defs;
}

/** Lookup of served resources by group/version/plural. */
export class Registry {
  readonly defs: ResourceDef[];
  private readonly byPath = new Map<string, ResourceDef>();

  constructor(crdDefs: ResourceDef[]) {
    this.defs = [...coreDefs, ...crdDefs];
    for (const d of this.defs) this.byPath.set(`${d.group}/${d.version}/${d.plural}`, d);
  }

  /** The resource served at /api(s)/<group>/<version>/<plural>, if any. */
  lookup(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.byPath.get(`${group}/${version}/${plural}`);
  }

  /** Group names with their versions, in a stable order (core excluded). */
  groups(): Array<{ name: string; versions: string[] }> {
    const m = new Map<string, Set<string>>();
    for (const d of this.defs) {
      if (d.group === "") continue;
      let s = m.get(d.group);
      if (!s) m.set(d.group, (s = new Set()));
      s.add(d.version);
    }
    return [...m.entries()].map(([name, vs]) => ({ name, versions: [...vs] }));
  }

  /** Resources of one group/version. */
  resources(group: string, version: string): ResourceDef[] {
    return this.defs.filter((d) => d.group === group && d.version === version);
  }
}
