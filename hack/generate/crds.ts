/**
 * Emits apiextensions.k8s.io/v1 CustomResourceDefinitions for the fabric kinds.
 */
import type { ResourceDefinition, SchemaNode } from "../../lib/api/schemas.js";
import { toYaml, yamlHeader } from "./output.js";

/** The structural root schema of a CRD version (metadata only as `type: object`, like kube requires). */
export function crdRootSchema(res: ResourceDefinition): SchemaNode {
  if (res.spec === undefined || res.status === undefined) throw new Error(`resource ${res.kind} has no spec/status schema`);
  return {
    type: "object",
    description: res.description,
    required: ["spec"],
    properties: {
      apiVersion: {
        type: "string",
        description:
          "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.",
      },
      kind: {
        type: "string",
        description:
          "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. In CamelCase.",
      },
      metadata: { type: "object" },
      spec: structuredClone(res.spec),
      status: structuredClone(res.status),
    },
  };
}

/** The CRD object for one fabric resource. */
export function crdFor(res: ResourceDefinition): SchemaNode {
  const names: SchemaNode = {
    kind: res.kind,
    listKind: res.listKind,
    plural: res.plural,
    singular: res.singular,
  };
  if (res.shortNames.length > 0) names.shortNames = [...res.shortNames];
  if (res.categories.length > 0) names.categories = [...res.categories];
  const version: SchemaNode = {
    name: res.version,
    served: true,
    storage: true,
    schema: { openAPIV3Schema: crdRootSchema(res) },
  };
  if (res.statusSubresource) version.subresources = { status: {} };
  if (res.printerColumns.length > 0) version.additionalPrinterColumns = res.printerColumns.map((c) => ({ ...c }));
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${res.plural}.${res.group}`,
      labels: { "app.kubernetes.io/part-of": "access-fabric" },
    },
    spec: {
      group: res.group,
      names,
      scope: res.scope,
      versions: [version],
    },
  };
}

/** `crds/<plural>.<group>.yaml` for every fabric resource. */
export function generateCrds(resources: ResourceDefinition[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const res of resources.filter((r) => r.fabric)) {
    out.set(`crds/${res.plural}.${res.group}.yaml`, yamlHeader([res.source, "schemas/common.yaml"]) + toYaml(crdFor(res)));
  }
  return out;
}
