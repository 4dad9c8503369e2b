/**
 * Discovery documents (/api, /apis, APIResourceList) and the published
 * OpenAPI v2/v3 documents, generated from schemas/ by `make generate`.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeOpenAPIv2 } from "./openapi-v2-proto.js";
import { groupVersion, type Registry, type ResourceDef } from "./registry.js";

const here = dirname(fileURLToPath(import.meta.url));
const generatedDir = join(here, "generated");

/** The version this server reports: the Kubernetes API level it emulates. */
export const serverVersion = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0-fabric.0.1.0",
  gitCommit: "",
  gitTreeState: "clean",
  buildDate: "2026-11-21T00:00:00Z",
  goVersion: "n/a",
  compiler: "tsx",
  platform: `${process.platform}/${process.arch}`,
};

function verbs(def: ResourceDef): string[] {
  return ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
}

/** The APIResourceList of one group/version. */
export function resourceList(registry: Registry, group: string, version: string): Record<string, unknown> {
  const resources: Record<string, unknown>[] = [];
  for (const d of registry.resources(group, version)) {
    const r: Record<string, unknown> = {
      name: d.plural,
      singularName: d.singular,
      namespaced: d.namespaced,
      kind: d.kind,
      verbs: verbs(d),
    };
    if (d.shortNames.length > 0) r.shortNames = d.shortNames;
    if (d.categories.length > 0) r.categories = d.categories;
    resources.push(r);
    if (d.statusSubresource) {
      resources.push({ name: `${d.plural}/status`, singularName: "", namespaced: d.namespaced, kind: d.kind, verbs: ["get", "patch", "update"] });
    }
  }
  return { kind: "APIResourceList", apiVersion: "v1", groupVersion: groupVersion({ group, version }), resources };
}

/** The APIGroupList at /apis. */
export function groupList(registry: Registry): Record<string, unknown> {
  return { kind: "APIGroupList", apiVersion: "v1", groups: registry.groups().map((g) => apiGroup(g.name, g.versions)) };
}

/** One APIGroup. */
export function apiGroup(name: string, versions: string[]): Record<string, unknown> {
  const vs = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { kind: "APIGroup", apiVersion: "v1", name, versions: vs, preferredVersion: vs[0] };
}

/** The APIVersions document at /api. */
export function coreVersions(serverAddress: string): Record<string, unknown> {
  return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }] };
}

/** The published OpenAPI documents, loaded once. */
export class OpenApiDocs {
  private readonly v3 = new Map<string, { body: Buffer; hash: string }>();
  private readonly v2json: Buffer;
  private v2pb?: Buffer;

  constructor(dir = generatedDir) {
    const indexPath = join(dir, "openapi-v3", "index.json");
    if (existsSync(indexPath)) {
      const index = JSON.parse(readFileSync(indexPath, "utf8")) as Record<string, string>;
      for (const [path, file] of Object.entries(index)) {
        const body = readFileSync(join(dir, "openapi-v3", file));
        const hash = createHash("sha512").update(body).digest("hex").slice(0, 64).toUpperCase();
        this.v3.set(path, { body, hash });
      }
    }
    const v2 = join(dir, "openapi-v2.json");
    this.v2json = existsSync(v2) ? readFileSync(v2) : Buffer.from(JSON.stringify({ swagger: "2.0", info: { title: "Access Fabric", version: "v0.1.0" }, paths: {}, definitions: {} }));
  }

  /** The /openapi/v3 index. */
  v3Index(): Record<string, unknown> {
    const paths: Record<string, unknown> = {};
    for (const [p, d] of this.v3) paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${d.hash}` };
    return { paths };
  }

  /** One group-version document of /openapi/v3/<path>. */
  v3Doc(path: string): Buffer | undefined {
    return this.v3.get(path)?.body;
  }

  /** /openapi/v2 as JSON. */
  v2Json(): Buffer {
    return this.v2json;
  }

  /** /openapi/v2 as the gnostic protobuf kubectl 1.20 asks for. */
  v2Protobuf(): Buffer {
    this.v2pb ??= Buffer.from(encodeOpenAPIv2(JSON.parse(this.v2json.toString("utf8"))));
    return this.v2pb;
  }
}
