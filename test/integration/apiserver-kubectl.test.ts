/**
 * The embedded API server driven by the real kubectl binary: apply (client
 * and server side), printer columns, categories, describe, explain, watch,
 * selectors, pagination, finalizers and error answers.
 *
 * The whole block runs once per kubectl binary: $KUBECTL (default: kubectl on
 * PATH, 1.32) and, when $KUBECTL_LEGACY names one, an older kubectl (hack/test.sh
 * sets it to Debian's 1.20). Both passes share one control plane, so object
 * names and selector labels carry the binary's tag (k132-, k120-). Where an
 * old kubectl lacks a flag or words a message differently, the assertion
 * adapts for that version only.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { eventually, kubectlVariants, kubectlWith, repoRoot, sharedControlPlane, type TestControlPlane } from "../support/controlplane.js";

const examplesDir = join(repoRoot, "manifests", "examples");
/** Examples of kinds served without a controller yet (ReleaseChannel, VPNConnection). */
const plannedDir = join(examplesDir, "planned");
const yamlFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith(".yaml")).map((f) => join(dir, f));

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

/** kubectl 1.21 hid metadata.managedFields behind --show-managed-fields; older clients print them in -o json. */
const hasShowManagedFields = (minor: number) => minor >= 21;
/**
 * kubectl 1.25 moved field validation to the server (fieldValidation=Strict);
 * older clients validate against the published OpenAPI v2 document themselves
 * and never send the request.
 */
const hasServerSideFieldValidation = (minor: number) => minor >= 25;

for (const variant of kubectlVariants()) {
  describe(`API server with the real kubectl ${variant.gitVersion} (${variant.bin})`, function () {
    this.timeout(120_000);
    let t: TestControlPlane;
    const k = (args: string[], input?: string) => kubectlWith(variant.bin, t.kubeconfig, args, { input });
    /** Names and label values carry the binary's tag so the passes never see each other's objects. */
    const n = (name: string) => `${variant.tag}-${name}`;

    before(async () => {
      t = await sharedControlPlane();
    });

    it("applies the examples (every kind), then says unchanged on re-apply", async () => {
      // An earlier pass (another kubectl) may have applied the examples already.
      const first = await k(["apply", "-f", examplesDir, "-f", plannedDir]);
      assert.equal(first.code, 0, first.stderr);
      for (const line of first.stdout.trim().split("\n")) assert.match(line, / (created|configured|unchanged)$/);
      const kinds = new Set<string>();
      for (const f of [...yamlFiles(examplesDir), ...yamlFiles(plannedDir)]) {
        for (const d of parseAllDocuments(readFileSync(f, "utf8"))) {
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
      const again = await k(["apply", "-f", examplesDir, "-f", plannedDir]);
      assert.equal(again.code, 0, again.stderr);
      const lines = again.stdout.trim().split("\n");
      assert.ok(lines.length > 0);
      for (const line of lines) assert.match(line, / unchanged$/, `re-apply changed something: ${line}`);
    });

    it("bumps generation on a spec change but not on a label change", async () => {
      const name = n("gen-a");
      assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml(name))).code, 0);
      const get = async () => JSON.parse((await k(["get", "nodegroup", name, "-o", "json"])).stdout) as { metadata: { generation: number; resourceVersion: string } };
      const g1 = await get();
      assert.equal(g1.metadata.generation, 1);
      const lbl = await k(["apply", "-f", "-"], nodeGroupYaml(name, { labels: { team: "ops" } }));
      assert.equal(lbl.code, 0, lbl.stderr);
      const g2 = await get();
      assert.equal(g2.metadata.generation, 1);
      assert.notEqual(g2.metadata.resourceVersion, g1.metadata.resourceVersion);
      const spec = await k(["apply", "-f", "-"], nodeGroupYaml(name, { labels: { team: "ops" }, extra: "  description: changed\n" }));
      assert.equal(spec.code, 0, spec.stderr);
      assert.equal((await get()).metadata.generation, 2);
    });

    it("server-side apply: conflicts between field managers, --force-conflicts resolves", async () => {
      const name = n("ssa-a");
      const a = await k(["apply", "--server-side", "--field-manager", "alice", "-f", "-"], nodeGroupYaml(name, { extra: "  description: from alice\n" }));
      assert.equal(a.code, 0, a.stderr);
      assert.match(a.stdout, /serverside-applied/);
      const b = await k(["apply", "--server-side", "--field-manager", "bob", "-f", "-"], nodeGroupYaml(name, { extra: "  description: from bob\n" }));
      assert.notEqual(b.code, 0);
      assert.match(b.stderr, /conflict/i);
      assert.match(b.stderr, /alice/);
      assert.match(b.stderr, /\.spec\.description/);
      const forced = await k(["apply", "--server-side", "--field-manager", "bob", "--force-conflicts", "-f", "-"], nodeGroupYaml(name, { extra: "  description: from bob\n" }));
      assert.equal(forced.code, 0, forced.stderr);
      const getArgs = ["get", "nodegroup", name, "-o", "json", ...(hasShowManagedFields(variant.minor) ? ["--show-managed-fields"] : [])];
      const got = await k(getArgs);
      assert.equal(got.code, 0, got.stderr);
      const obj = JSON.parse(got.stdout) as {
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
      const name = n("cols-a");
      assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml(name))).code, 0);
      const get = await k(["get", "nodegroups"]);
      assert.equal(get.code, 0, get.stderr);
      const header = get.stdout.split("\n")[0] ?? "";
      assert.match(header, /^NAME\s+CLUSTER\s+/);
      assert.match(header, /AGE/);
      assert.match(get.stdout, new RegExp(`${name}\\s+kctl\\s+`));
      const fabric = await k(["get", "fabric"]);
      assert.equal(fabric.code, 0, fabric.stderr);
      assert.ok(fabric.stdout.includes(`nodegroup.accessfabric.io/${name}`), fabric.stdout);
      const desc = await k(["describe", "nodegroup", name]);
      assert.equal(desc.code, 0, desc.stderr);
      assert.match(desc.stdout, new RegExp(`Name:\\s+${name}`));
      assert.match(desc.stdout, /Cluster:\s+kctl/);
      const explain = await k(["explain", "fabricnode.spec"]);
      assert.equal(explain.code, 0, explain.stderr);
      assert.match(explain.stdout, /membership/);
      assert.match(explain.stdout, /hostFingerprint/);
    });

    it("watches with kubectl get -w: ADDED, MODIFIED, DELETED", async () => {
      const name = n("watch-a");
      const labels = { watch: variant.tag };
      const child = spawn(variant.bin, ["--kubeconfig", t.kubeconfig, "get", "nodegroups", "-w", "--output-watch-events", "-l", `watch=${variant.tag}`], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (b: Buffer) => (out += b.toString()));
      try {
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml(name, { labels }))).code, 0);
        await eventually(() => new RegExp(`ADDED\\s+${name}\\s+kctl`).test(out));
        assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml(name, { labels, extra: "  description: modified\n" }))).code, 0);
        await eventually(() => new RegExp(`MODIFIED\\s+${name}\\s+kctl`).test(out));
        assert.equal((await k(["delete", "nodegroup", name])).code, 0);
        await eventually(() => new RegExp(`DELETED\\s+${name}\\s+kctl`).test(out));
      } finally {
        child.kill();
      }
    });

    it("filters by label selector and paginates with --chunk-size", async () => {
      const page = (i: number) => n(`page-${String(i).padStart(2, "0")}`);
      const pageKey = `${variant.tag}-page`;
      const docs: string[] = [];
      for (let i = 0; i < 12; i++) docs.push(nodeGroupYaml(page(i), { labels: { tier: i % 3 === 0 ? "gold" : "silver", [pageKey]: "yes" } }));
      const ap = await k(["apply", "-f", "-"], docs.join("---\n"));
      assert.equal(ap.code, 0, ap.stderr);
      const gold = await k(["get", "nodegroups", "-l", `tier=gold,${pageKey}=yes`, "-o", "name"]);
      assert.deepEqual(gold.stdout.trim().split("\n"), [0, 3, 6, 9].map((i) => `nodegroup.accessfabric.io/${page(i)}`));
      const notGold = await k(["get", "nodegroups", "-l", `tier!=gold,${pageKey}`, "-o", "name"]);
      assert.equal(notGold.stdout.trim().split("\n").length, 8);
      const chunked = await k(["get", "nodegroups", "-l", `${pageKey}=yes`, "--chunk-size", "5", "-o", "name", "-v=6"]);
      assert.equal(chunked.code, 0, chunked.stderr);
      assert.equal(chunked.stdout.trim().split("\n").length, 12);
      const requests = chunked.stderr.split("\n").filter((l) => /GET .*nodegroups.*limit=5/.test(l));
      assert.ok(requests.length >= 3, `expected ≥3 paged requests, saw:\n${chunked.stderr}`);
      assert.ok(requests.some((l) => l.includes("continue=")), "no continue token used");
    });

    it("deletes with a finalizer: deletionTimestamp first, removal when the finalizer goes", async () => {
      const name = n("fin-a");
      assert.equal((await k(["apply", "-f", "-"], nodeGroupYaml(name, { finalizers: ["accessfabric.io/test"] }))).code, 0);
      const del = await k(["delete", "nodegroup", name, "--wait=false"]);
      assert.equal(del.code, 0, del.stderr);
      const o = JSON.parse((await k(["get", "nodegroup", name, "-o", "json"])).stdout) as { metadata: { deletionTimestamp?: string } };
      assert.ok(o.metadata.deletionTimestamp, "deletionTimestamp not set");
      const patch = await k(["patch", "nodegroup", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
      assert.equal(patch.code, 0, patch.stderr);
      await eventually(async () => (await k(["get", "nodegroup", name])).stderr.includes("NotFound"));
    });

    it("refuses an invalid object with 422 and field causes, storing nothing", async () => {
      const name = n("bad-token");
      const bad = `apiVersion: accessfabric.io/v1alpha1
kind: JoinToken
metadata:
  name: ${name}
spec:
  cluster: kctl
  maxUses: 0
`;
      const r = await k(["apply", "-f", "-"], bad);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /is invalid/);
      assert.match(r.stderr, /spec\.maxUses/);
      const g = await k(["get", "jointoken", name]);
      assert.match(g.stderr, /NotFound/);
    });

    it("refuses unknown fields under fieldValidation=Strict (kubectl's default)", async () => {
      const strictName = n("strict-a");
      const r = await k(["apply", "-f", "-"], nodeGroupYaml(strictName, { extra: "  bogusField: 1\n" }));
      assert.notEqual(r.code, 0);
      if (hasServerSideFieldValidation(variant.minor)) {
        assert.match(r.stderr, /unknown field "spec\.bogusField"/);
      } else {
        // The old client refuses it itself, from the schema in /openapi/v2.
        assert.match(r.stderr, /ValidationError\(NodeGroup\.spec\): unknown field "bogusField" in io\.accessfabric\.v1alpha1\.NodeGroup\.spec/);
      }
      assert.match((await k(["get", "nodegroup", strictName])).stderr, /NotFound/);
      const prunedName = n("strict-b");
      const ignored = await k(["apply", "--validate=false", "-f", "-"], nodeGroupYaml(prunedName, { extra: "  bogusField: 1\n" }));
      assert.equal(ignored.code, 0, ignored.stderr);
      const stored = parseYaml((await k(["get", "nodegroup", prunedName, "-o", "yaml"])).stdout) as { spec: Record<string, unknown> };
      assert.equal(stored.spec.bogusField, undefined, "unknown field was stored instead of pruned");
    });
  });
}
