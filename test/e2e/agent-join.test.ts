/**
 * A real fabric-agent process joins a real control plane process: pins the
 * agent API CA, waits for approval (given with kubectl), stores a key (0600)
 * and a certificate that verifies against the cluster CA, authenticates
 * with it, renews it by itself near the end of its (short) lifetime, and is
 * refused after revocation.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import { loadIdentity } from "../../agent/enroll/identity-store.js";
import { AgentProcesses } from "../support/agent-process.js";
import { eventually, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";

describe("e2e: fabric-agent join, approve, authenticate, renew, revoke", function () {
  this.timeout(180_000);
  let cp: ChildControlPlane;
  const agents = new AgentProcesses();
  const cpDir = tempStateDir();
  const agentDir = tempStateDir("fabric-agent-");

  before(async () => {
    cp = await spawnControlPlane(cpDir, ["--agent-port", "0", "--node-cert-lifetime", "20s", "--leader-elect", "false"]);
  });
  after(async () => {
    await agents.stopAll("SIGTERM");
    await cp?.stop();
    rmSync(cpDir, { recursive: true, force: true });
    rmSync(agentDir, { recursive: true, force: true });
  });

  it("joins, authenticates, renews without operator action, and is refused after revocation", async () => {
    const ready = /"msg":"control plane ready".*?"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "edge");
    const token = await createToken(cp.kubeconfig, "edge-join", { cluster: "edge", allowedRoles: ["relay-node"] });

    const agent = agents.start(["join", "--server", server, "--token", token, "--ca-hash", caHash, "--node-name", "edge-1", "--cluster", "edge", "--roles", "relay-node", "--capabilities", "can_route_mesh", "--poll-interval", "300ms"], { stateDir: agentDir });
    await agent.waitFor("waiting for approval", 30_000);
    await agent.waitFor(": Pending", 30_000);

    const jr = await eventually(async () => {
      const g = await kubectl(cp.kubeconfig, ["get", "joinrequests", "-o", "jsonpath={.items[0].metadata.name}"]);
      return g.stdout !== "" ? g.stdout : undefined;
    });
    // relay-node needs can_accept_node_ingress too: flagged before approval.
    await eventually(async () => (await kubectl(cp.kubeconfig, ["get", "joinrequest", jr, "-o", "jsonpath={.status.unsupportedRoles}"])).stdout.includes("relay-node"));
    const ap = await kubectl(cp.kubeconfig, ["patch", "joinrequest", jr, "--type", "merge", "-p", '{"spec":{"decision":"Approved","decisionReason":"e2e"}}']);
    assert.equal(ap.code, 0, ap.stderr);
    await agent.waitFor("joined cluster edge", 30_000);

    const dir = join(agentDir, "clusters", "edge");
    assert.equal(statSync(join(dir, "node.pem")).mode & 0o777, 0o600);
    assert.equal(statSync(join(agentDir, "host.key")).mode & 0o777, 0o600);
    const first = await loadIdentity(dir);
    const cert = new X509Certificate(first.certPem);
    assert.ok(cert.verify(new X509Certificate(first.caPem).publicKey));
    assert.ok(cert.checkPrivateKey(first.key));
    // The private key never left the host: it is in no API object and no table.
    const keyBody = first.keyPem.split("\n").slice(1, 3).join("");
    const dump = await kubectl(cp.kubeconfig, ["get", "joinrequests,fabricnodes", "-o", "json"]);
    assert.ok(!dump.stdout.includes(keyBody));

    const mtls = new AgentApiClient(server, { ca: first.serverCaPem, cert: first.certPem, key: first.keyPem });
    const who = await mtls.request<{ node: string; serial: string }>("GET", "/v1/identity");
    assert.equal(who.body.node, "edge.edge-1");
    assert.equal(who.body.serial, first.info.serial);

    // Renewal at 70-90% of 20 s, by the agent alone.
    const renewed = await eventually(async () => {
      const now = await loadIdentity(dir);
      return now.info.serial !== first.info.serial ? now : undefined;
    }, 60_000, 500);
    assert.ok(new Date(renewed.info.notAfter).getTime() > new Date(first.info.notAfter).getTime());
    assert.notEqual(renewed.keyPem, first.keyPem);
    await assert.rejects(mtls.request("GET", "/v1/identity"), (e: unknown) => e instanceof AgentApiRequestError && e.code === "CertificateSuperseded");
    mtls.close();
    const fresh = new AgentApiClient(server, { ca: renewed.serverCaPem, cert: renewed.certPem, key: renewed.keyPem });
    try {
      assert.equal((await fresh.request<{ serial: string }>("GET", "/v1/identity")).body.serial, renewed.info.serial);
      await eventually(async () => (await kubectl(cp.kubeconfig, ["get", "fabricnode", "edge.edge-1", "-o", "jsonpath={.status.identity.certificateSerial}"])).stdout === renewed.info.serial, 70_000);

      const rv = await kubectl(cp.kubeconfig, ["patch", "fabricnode", "edge.edge-1", "--type", "merge", "-p", '{"spec":{"membership":"Revoked"}}']);
      assert.equal(rv.code, 0, rv.stderr);
      const err = await eventually(async () => {
        try {
          await fresh.request("GET", "/v1/identity");
          return undefined;
        } catch (e) {
          return e instanceof AgentApiRequestError ? e : undefined;
        }
      });
      assert.equal(err.code, "IdentityRevoked");
    } finally {
      fresh.close();
    }
    assert.ok(readFileSync(join(dir, "identity.json"), "utf8").includes('"cluster": "edge"'));
  });
});
