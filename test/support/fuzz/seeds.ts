/**
 * What the fuzzer starts from: every served resource (read from the schema
 * catalog, like the server) and, for each, valid objects to mutate: the
 * documented examples in manifests/examples/ for the fabric kinds and
 * hand-written ones for the built-in kinds.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { loadCatalog, type ResourceDefinition } from "../../../lib/api/schemas.js";
import { repoRoot } from "../controlplane.js";
import { fromJson, isFields, type Fields } from "./json-text.js";

/** A served resource and valid objects of its kind. */
export interface FuzzResource {
  def: ResourceDefinition;
  /** `apiVersion` of its objects. */
  apiVersion: string;
  /** Valid objects (metadata is replaced by the fuzzer before use). */
  seeds: Fields[];
}

/** Valid built-in objects: the examples only hold a Namespace and a Secret. */
const builtinSeeds: Fields[] = [
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm" }, data: { "app.conf": "mode=edge\n", empty: "" }, binaryData: { blob: "AAEC" } },
  { apiVersion: "v1", kind: "Secret", metadata: { name: "s" }, type: "Opaque", stringData: { password: "hunter2" } },
  { apiVersion: "v1", kind: "Secret", metadata: { name: "s" }, type: "kubernetes.io/tls", data: { "tls.crt": "Y2VydA==", "tls.key": "a2V5" } },
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "ns", labels: { team: "edge" } } },
  {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name: "l" },
    spec: { holderIdentity: "controller-0", leaseDurationSeconds: 15, acquireTime: "2024-01-01T00:00:00.000000Z", renewTime: "2024-01-01T00:00:05.000000Z", leaseTransitions: 3 },
  },
  {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: "e" },
    involvedObject: { apiVersion: "accessfabric.io/v1alpha1", kind: "FabricNode", name: "edge-01", uid: "6f1c2b1e-5b7e-4a57-9a59-0d1f3c1b2a44" },
    reason: "Joined",
    message: "node joined the fabric",
    type: "Normal",
    count: 1,
    source: { component: "fabric-controllers" },
    firstTimestamp: "2024-01-01T00:00:00Z",
    lastTimestamp: "2024-01-01T00:00:00Z",
  },
];

function exampleObjects(): Fields[] {
  const out: Fields[] = [];
  // The planned kinds' examples too: they are served (and fuzzed) before they have controllers.
  for (const dir of [join(repoRoot, "manifests", "examples"), join(repoRoot, "manifests", "examples", "planned")]) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
      for (const doc of parseAllDocuments(readFileSync(join(dir, file), "utf8"))) {
        const v: unknown = doc.toJS();
        if (isFields(v)) out.push(fromJson(v) as Fields);
      }
    }
  }
  return out;
}

/** Every served resource with its seeds; throws when a kind has none (a new kind needs an example). */
export function fuzzResources(): FuzzResource[] {
  const objects = [...exampleObjects(), ...builtinSeeds];
  return loadCatalog().resources.map((def) => {
    const apiVersion = def.group === "" ? def.version : `${def.group}/${def.version}`;
    const seeds = objects.filter((o) => o.kind === def.kind && o.apiVersion === apiVersion);
    if (seeds.length === 0) throw new Error(`no valid example of ${def.kind}: add one to manifests/examples/ or the fuzzer's built-in seeds`);
    return { def, apiVersion, seeds };
  });
}
