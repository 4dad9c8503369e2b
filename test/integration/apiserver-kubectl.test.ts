/**
 * The embedded API server driven by the real kubectl binary: apply (client
 * and server side), printer columns, categories, describe, explain, watch,
 * selectors, pagination, finalizers and error answers.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { eventually, kubectl, kubectlBin, repoRoot, sharedControlPlane, type TestControlPlane } from "../support/controlplane.js";

const examplesDir = join(repoRoot, "manifests", "examples");

function nodeGroupYaml(name: string, opts: { parent?: string; labels?: Record<string, string>; finalizers?: string[]; extra?: string } = {}): string {
  const labels = opts.labels ? `\n  labels:\n${Object.entries(opts.labels).map(([k, v]) => `    ${k}: "${v}"`).join("\n")}` : "";
  const fin = opts.finalizers ? `\n  finalizers:\n${opts.finalizers.map((f) => `    - ${f}`).join("\n")}` : "";
  return `apiVersion: accessfabric.io/v1alpha1
kind: NodeGroup
metadata:
  name: ${name}${labels}${fin}
spec:
  cluster: kctl
${opts.parent ? `  parent: ${opts.parent}\n` : ""}${opts.extra ?? ""}`;
}

describe("API server with the real kubectl", function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  const k = (args: string[], input?: string) => kubectl(t.kubeconfig, args, { input });

  before(async () => {
    t = await sharedControlPlane();
  });

  it("applies the examples (every kind), then says unchanged on re-apply", async () => {
    const first = await k(["apply", "-f", examplesDir]);
    assert.equal(first.code, 0, first.stderr);
    const kinds = new Set<string>();
    for (const f of readdirSync(examplesDir)) {
      for (const d of parseAllDocuments(await import("node:fs").then((fs) => fs.readFileSync(join(examplesDir, f), "utf8")))) {
        const o = d.toJSON() as { kind?: string; apiVersion?: string } | null;
        if (o?.apiVersion === "accessfabric.io/v1alpha1" && o.kind) kinds.add(o.kind);
      }
    }
    for (const kind of ["FabricCluster", "FabricNode", "NodeGroup", "JoinToken", "JoinRequest", "RoleAssignment", "ServiceWorkload", "VPNConnection", "Release", "ReleaseChannel"]) {
      assert.ok(kinds.has(kind), `examples lack a ${kind}`);
    }
    const list = await k(["get", "fabric", "-A", "-o", "json"]);
    assert.equal(list.code, 0, list.stderr);
    const items = (JSON.parse(list.stdout) as { items: Array<{ kind: string }> }).items;
    assert.deepEqual(new Set(items.map((i) => i.kind)), kinds);
    const again = await k(["apply", "-f", examplesDir]);
    assert.equal(again.code, 0, again.stderr);
    const lines = again.stdout.trim().split("\n");
    assert.ok(lines.length > 0);
    for (const line of lines) assert.match(line, / unchanged$/, `re-apply changed something: ${line}`);
  });

  it("bumps generation on a spec change but not on a label change", async () => {
    assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml("gen-a"))).code, 0);
    const get = async () => JSON.parse((await k(["get", "nodegroup", "gen-a", "-o", "json"])).stdout) as { metadata: { generation: number; resourceVersion: string } };
    const g1 = await get();
    assert.equal(g1.metadata.generation, 1);
    const lbl = await k(["apply", "-f", "-"], nodeGroupYaml("gen-a", { labels: { team: "ops" } }));
    assert.equal(lbl.code, 0, lbl.stderr);
    const g2 = await get();
    assert.equal(g2.metadata.generation, 1);
    assert.notEqual(g2.metadata.resourceVersion, g1.metadata.resourceVersion);
    const spec = await k(["apply", "-f", "-"], nodeGroupYaml("gen-a", { labels: { team: "ops" }, extra: "  description: changed\n" }));
    assert.equal(spec.code, 0, spec.stderr);
    assert.equal((await get()).metadata.generation, 2);
  });

  it("server-side apply: conflicts between field managers, --force-conflicts resolves", async () => {
    const a = await k(["apply", "--server-side", "--field-manager", "alice", "-f", "-"], nodeGroupYaml("ssa-a", { extra: "  description: from alice\n" }));
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /serverside-applied/);
    const b = await k(["apply", "--server-side", "--field-manager", "bob", "-f", "-"], nodeGroupYaml("ssa-a", { extra: "  description: from bob\n" }));
    assert.notEqual(b.code, 0);
    assert.match(b.stderr, /conflict/i);
    assert.match(b.stderr, /alice/);
    assert.match(b.stderr, /\.spec\.description/);
    const forced = await k(["apply", "--server-side", "--field-manager", "bob", "--force-conflicts", "-f", "-"], nodeGroupYaml("ssa-a", { extra: "  description: from bob\n" }));
    assert.equal(forced.code, 0, forced.stderr);
    const obj = JSON.parse((await k(["get", "nodegroup", "ssa-a", "-o", "json", "--show-managed-fields"])).stdout) as {
      spec: { description: string };
      metadata: { managedFields: Array<{ manager: string; operation: string; fieldsV1: Record<string, unknown> }> };
    };
    assert.equal(obj.spec.description, "from bob");
    const bob = obj.metadata.managedFields.find((m) => m.manager === "bob");
    assert.ok(bob && bob.operation === "Apply");
    assert.ok(JSON.stringify(bob.fieldsV1).includes("f:description"));
    const alice = obj.metadata.managedFields.find((m) => m.manager === "alice");
    assert.ok(!alice || !JSON.stringify(alice.fieldsV1).includes("f:description"), "alice still owns the forced field");
  });

  it("shows printer columns, the fabric category, describe and explain", async () => {
    assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml("cols-a"))).code, 0);
    const get = await k(["get", "nodegroups"]);
    assert.equal(get.code, 0, get.stderr);
    const header = get.stdout.split("\n")[0] ?? "";
    assert.match(header, /^NAME\s+CLUSTER\s+/);
    assert.match(header, /AGE/);
    assert.match(get.stdout, /cols-a\s+kctl\s+/);
    const fabric = await k(["get", "fabric"]);
    assert.equal(fabric.code, 0, fabric.stderr);
    assert.match(fabric.stdout, /nodegroup\.accessfabric\.io\/cols-a/);
    const desc = await k(["describe", "nodegroup", "cols-a"]);
    assert.equal(desc.code, 0, desc.stderr);
    assert.match(desc.stdout, /Name:\s+cols-a/);
    assert.match(desc.stdout, /Cluster:\s+kctl/);
    const explain = await k(["explain", "fabricnode.spec"]);
    assert.equal(explain.code, 0, explain.stderr);
    assert.match(explain.stdout, /membership/);
    assert.match(explain.stdout, /hostFingerprint/);
  });

  it("watches with kubectl get -w: ADDED, MODIFIED, DELETED", async () => {
    const child = spawn(kubectlBin, ["--kubeconfig", t.kubeconfig, "get", "nodegroups", "-w", "--output-watch-events", "-l", "watch=yes"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    try {
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml("watch-a", { labels: { watch: "yes" } }))).code, 0);
      await eventually(() => /ADDED\s+watch-a\s+kctl/.test(out));
      assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml("watch-a", { labels: { watch: "yes" }, extra: "  description: modified\n" }))).code, 0);
      await eventually(() => /MODIFIED\s+watch-a\s+kctl/.test(out));
      assert.equal((await k(["delete", "nodegroup", "watch-a"])).code, 0);
      await eventually(() => /DELETED\s+watch-a\s+kctl/.test(out));
    } finally {
      child.kill();
    }
  });

  it("filters by label selector and paginates with --chunk-size", async () => {
    const docs: string[] = [];
    for (let i = 0; i < 12; i++) docs.push(nodeGroupYaml(`page-${String(i).padStart(2, "0")}`, { labels: { tier: i % 3 === 0 ? "gold" : "silver", page: "yes" } }));
    const ap = await k(["apply", "-f", "-"], docs.join("---\n"));
    assert.equal(ap.code, 0, ap.stderr);
    const gold = await k(["get", "nodegroups", "-l", "tier=gold,page=yes", "-o", "name"]);
    assert.deepEqual(gold.stdout.trim().split("\n"), [0, 3, 6, 9].map((i) => `nodegroup.accessfabric.io/page-${String(i).padStart(2, "0")}`));
    const notGold = await k(["get", "nodegroups", "-l", "tier!=gold,page", "-o", "name"]);
    assert.equal(notGold.stdout.trim().split("\n").length, 8);
    const chunked = await k(["get", "nodegroups", "-l", "page=yes", "--chunk-size", "5", "-o", "name", "-v=6"]);
    assert.equal(chunked.code, 0, chunked.stderr);
    assert.equal(chunked.stdout.trim().split("\n").length, 12);
    const requests = chunked.stderr.split("\n").filter((l) => /GET .*nodegroups.*limit=5/.test(l));
    assert.ok(requests.length >= 3, `expected ≥3 paged requests, saw:\n${chunked.stderr}`);
    assert.ok(requests.some((l) => l.includes("continue=")), "no continue token used");
  });

  it("deletes with a finalizer: deletionTimestamp first, removal when the finalizer goes", async () => {
    assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml("fin-a", { finalizers: ["accessfabric.io/test"] }))).code, 0);
    const del = await k(["delete", "nodegroup", "fin-a", "--wait=false"]);
    assert.equal(del.code, 0, del.stderr);
    const o = JSON.parse((await k(["get", "nodegroup", "fin-a", "-o", "json"])).stdout) as { metadata: { deletionTimestamp?: string } };
    assert.ok(o.metadata.deletionTimestamp, "deletionTimestamp not set");
    const patch = await k(["patch", "nodegroup", "fin-a", "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
    assert.equal(patch.code, 0, patch.stderr);
    await eventually(async () => (await k(["get", "nodegroup", "fin-a"])).stderr.includes("NotFound"));
  });

  it("refuses an invalid object with 422 and field causes, storing nothing", async () => {
    const bad = `apiVersion: accessfabric.io/v1alpha1
kind: JoinToken
metadata:
  name: bad-token
spec:
  cluster: kctl
  maxUses: 0
`;
    const r = await k(["apply", "-f", "-"], bad);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is invalid/);
    assert.match(r.stderr, /spec\.maxUses/);
    const g = await k(["get", "jointoken", "bad-token"]);
    assert.match(g.stderr, /NotFound/);
  });

  it("refuses unknown fields under fieldValidation=Strict (kubectl's default)", async () => {
    const r = await k(["apply", "-f", "-"], nodeGroupYaml("strict-a", { extra: "  bogusField: 1\n" }));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown field "spec\.bogusField"/);
    assert.match((await k(["get", "nodegroup", "strict-a"])).stderr, /NotFound/);
    const ignored = await k(["apply", "--validate=false", "-f", "-"], nodeGroupYaml("strict-b", { extra: "  bogusField: 1\n" }));
    assert.equal(ignored.code, 0, ignored.stderr);
    const stored = parseYaml((await k(["get", "nodegroup", "strict-b", "-o", "yaml"])).stdout) as { spec: Record<string, unknown> };
    assert.equal(stored.spec.bogusField, undefined, "unknown field was stored instead of pruned");
  });
});
