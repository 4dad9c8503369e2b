/**
 * A JoinRequest's decision is final, refused by the API server's evaluation
 * of the CRD's CEL transition rule (x-kubernetes-validations), as a real
 * cluster would refuse it: flipping Approved to Denied (or back), or
 * clearing the decision, is 422 Invalid with a kube-style message, and the
 * node stays Active. Real API server, PostgreSQL, kubectl and the agent's
 * own join code.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join as joinPath } from "node:path";
import { parse as parseYaml } from "yaml";
import { join } from "../../agent/enroll/join.js";
import { eventually, kubectl, repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

describe("JoinRequest decisions are final", function () {
  this.timeout(120_000);
  let p: EnrollmentPlane;
  const dirs: string[] = [];

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "dec");
  });
  after(async () => {
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const get = async (what: string[], path: string): Promise<string> => {
    const g = await kubectl(p.kubeconfig, ["get", ...what, "-o", `jsonpath=${path}`]);
    return g.code === 0 ? g.stdout : "";
  };
  const patch = (name: string, body: unknown, type = "merge") => kubectl(p.kubeconfig, ["patch", "joinrequest", name, "--type", type, "-p", JSON.stringify(body)]);

  /** Starts a join with the agent's code; resolves with the JoinRequest's name and the join's promise. */
  async function requestJoin(node: string): Promise<{ jr: string; joined: Promise<unknown> }> {
    const tokenName = `dec-${node}`;
    const token = await createToken(p.kubeconfig, tokenName, { cluster: "dec" });
    const stateDir = tempStateDir("fabric-agent-");
    dirs.push(stateDir);
    const joined = join({ server: p.server, token, caHash: p.caHash, stateDir, nodeName: node, cluster: "dec", pollIntervalMs: 200 });
    joined.catch(() => undefined);
    const jr = await eventually(async () => (await get(["joinrequests", "-l", `accessfabric.io/jointoken=${tokenName}`], "{.items[0].metadata.name}")) || undefined, 30_000);
    return { jr, joined };
  }

  it("the CRD carries the transition rule, so a real cluster enforces it too", () => {
    const crd = parseYaml(readFileSync(joinPath(repoRoot, "crds", "joinrequests.accessfabric.io.yaml"), "utf8")) as {
      spec: { versions: Array<{ schema: { openAPIV3Schema: { properties: { spec: { "x-kubernetes-validations"?: Array<{ rule: string }> } } } } }> };
    };
    const rules = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec["x-kubernetes-validations"] ?? [];
    assert.ok(rules.some((r) => r.rule.includes("oldSelf.decision")), JSON.stringify(rules));
  });

  it("refuses Denied after Approved (422, kube-style message); the node stays Active", async () => {
    const { jr, joined } = await requestJoin("web-1");
    const ap = await patch(jr, { spec: { decision: "Approved", decisionReason: "rack 4" } });
    assert.equal(ap.code, 0, ap.stderr);
    await joined;
    await eventually(async () => (await get(["fabricnode", "dec.web-1"], "{.spec.membership}")) === "Active", 30_000);

    const deny = await patch(jr, { spec: { decision: "Denied" } });
    assert.notEqual(deny.code, 0, deny.stdout);
    assert.match(deny.stderr, /JoinRequest "[^"]+" is invalid: spec\.decision: Forbidden: decision is final once Approved or Denied; to revoke an approved node, set spec\.membership to Revoked on its FabricNode/);

    const cleared = await patch(jr, [{ op: "remove", path: "/spec/decision" }], "json");
    assert.notEqual(cleared.code, 0, cleared.stdout);
    assert.match(cleared.stderr, /spec\.decision: Forbidden: decision is final/);

    // A PUT (kubectl replace) is refused the same way.
    const current = JSON.parse((await kubectl(p.kubeconfig, ["get", "joinrequest", jr, "-o", "json"])).stdout) as { spec: Record<string, unknown> };
    const replaced = await kubectl(p.kubeconfig, ["replace", "-f", "-"], { input: JSON.stringify({ ...current, spec: { ...current.spec, decision: "Denied" } }) });
    assert.notEqual(replaced.code, 0, replaced.stdout);
    assert.match(replaced.stderr, /spec\.decision: Forbidden: decision is final/);

    // Other spec changes of a decided request still pass the rule.
    const reason = await patch(jr, { spec: { decisionReason: "rack 4, row 2" } });
    assert.equal(reason.code, 0, reason.stderr);

    assert.equal(await get(["joinrequest", jr], "{.spec.decision}"), "Approved");
    assert.equal(await get(["fabricnode", "dec.web-1"], "{.spec.membership}"), "Active");
    assert.equal(await get(["joinrequest", jr], '{.status.conditions[?(@.type=="Ready")].status}'), "True");
  });

  it("refuses Approved after Denied; a pending request may be decided either way", async () => {
    const { jr, joined } = await requestJoin("web-2");
    const dn = await patch(jr, { spec: { decision: "Denied", decisionReason: "unknown host" } });
    assert.equal(dn.code, 0, dn.stderr);
    await assert.rejects(joined);
    const ap = await patch(jr, { spec: { decision: "Approved" } });
    assert.notEqual(ap.code, 0, ap.stdout);
    assert.match(ap.stderr, /spec\.decision: Forbidden: decision is final/);
    assert.equal(await get(["joinrequest", jr], "{.spec.decision}"), "Denied");
    assert.equal(await get(["fabricnode", "dec.web-2"], "{.metadata.name}"), "");
  });
});
