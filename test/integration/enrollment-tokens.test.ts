/**
 * Enrollment against the real API server, real PostgreSQL, the real kubectl
 * and the agent's own enrollment code: token storage (hash only), 500
 * concurrent enrollments on a 10-use token, every refusal, replay, CSR
 * proof of possession, auto-approval limits, and the full join / approve /
 * authenticate / revoke flow with audit rows.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import { generateNodeKey } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { createCsr } from "../../lib/crypto/x509.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, enrollOnce, pinnedClient, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

describe("enrollment: tokens, join requests, approval, identity", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let client: AgentApiClient;

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "alpha");
    await applyCluster(p.kubeconfig, "beta");
    await applyCluster(p.kubeconfig, "auto", "TokenAutoApprove");
    client = await pinnedClient(p);
  });
  after(async () => {
    client?.close();
    await p?.stop();
  });

  const count = async (sql: string, args: unknown[] = []): Promise<number> => Number((await p.cp.db.pool.query<{ n: string }>(sql, args)).rows[0]?.n ?? -1);

  it("stores the raw token only in the Secret: PostgreSQL holds its id and a hash", async () => {
    const token = await createToken(p.kubeconfig, "hash-only", { cluster: "alpha" });
    assert.match(token, /^[a-z0-9]{6}\.[a-z0-9]{32}$/);
    const [id, secret] = token.split(".");
    const row = (await p.cp.db.pool.query("SELECT * FROM join_tokens WHERE name = 'hash-only'")).rows[0] as Record<string, unknown>;
    assert.equal(row.token_id, id);
    assert.ok(!JSON.stringify(row).includes(secret ?? "x"), "the secret appears in the row");
    const dump = await p.cp.db.pool.query("SELECT t::text AS t FROM join_tokens t");
    assert.ok(dump.rows.every((r: { t: string }) => !r.t.includes(secret ?? "x")));
    const get = await kubectl(p.kubeconfig, ["get", "jointoken", "hash-only", "-o", "json"]);
    assert.ok(!get.stdout.includes(secret ?? "x"), "the secret appears in the JoinToken object");
    assert.equal(await count("SELECT count(*) AS n FROM audit_events WHERE action = 'token.created' AND object_name = 'hash-only'"), 1);
  });

  it("500 concurrent enrollments on a token with maxUses 10: exactly 10 JoinRequests, the rest refused as exhausted", async () => {
    const token = await createToken(p.kubeconfig, "ten-uses", { cluster: "alpha", maxUses: 10 });
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => enrollOnce(client, { token, nodeName: `burst-${i}` })));
    const ok = results.filter((r) => r.ok);
    const refused = results.filter((r) => !r.ok);
    const codes = new Map<string, number>();
    for (const r of refused) if (!r.ok) codes.set(`${r.status} ${r.code} ${r.message}`, (codes.get(`${r.status} ${r.code} ${r.message}`) ?? 0) + 1);
    assert.equal(ok.length, 10, JSON.stringify([...codes]));
    assert.equal(refused.length, 490);
    for (const r of refused) {
      assert.ok(!r.ok);
      assert.equal(r.status, 403);
      assert.equal(r.code, "TokenExhausted");
      assert.match(r.message, /used 10 of 10/);
    }
    assert.equal(await count("SELECT count(*) AS n FROM join_requests WHERE token_name = 'ten-uses'"), 10);
    assert.equal(await count("SELECT used AS n FROM join_tokens WHERE name = 'ten-uses'"), 10);
    const list = await kubectl(p.kubeconfig, ["get", "joinrequests", "-l", "accessfabric.io/jointoken=ten-uses", "-o", "name"]);
    assert.equal(list.stdout.trim().split("\n").length, 10);
    await eventually(async () => {
      const g = await kubectl(p.kubeconfig, ["get", "jointoken", "ten-uses", "-o", "jsonpath={.status.uses} {.status.conditions[?(@.type==\"Ready\")].reason}"]);
      return g.stdout === "10 Exhausted";
    });
    // The Secret of an exhausted token is cleaned up.
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "secret", "-n", "fabric-system", "jointoken-ten-uses"])).code !== 0);
  });

  it("refuses expired, revoked, wrong-cluster, malformed and unknown tokens, creating nothing", async () => {
    const before = await count("SELECT count(*) AS n FROM join_requests");
    const expiring = await createToken(p.kubeconfig, "short-lived", { cluster: "alpha", ttl: "2s", maxUses: 5 });
    const revoked = await createToken(p.kubeconfig, "to-revoke", { cluster: "alpha", maxUses: 5 });
    const good = await createToken(p.kubeconfig, "for-alpha", { cluster: "alpha", maxUses: 5 });
    assert.equal((await kubectl(p.kubeconfig, ["patch", "jointoken", "to-revoke", "--type", "merge", "-p", '{"spec":{"revoked":true}}'])).code, 0);
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "jointoken", "to-revoke", "-o", "jsonpath={.status.conditions[0].reason}"])).stdout === "Revoked");
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "jointoken", "short-lived", "-o", "jsonpath={.status.conditions[0].reason}"])).stdout === "Expired", 30_000);

    const cases: Array<[string, Parameters<typeof enrollOnce>[1], number, string]> = [
      ["expired", { token: expiring, nodeName: "x1" }, 403, "TokenExpired"],
      ["revoked", { token: revoked, nodeName: "x2" }, 403, "TokenRevoked"],
      ["wrong cluster", { token: good, nodeName: "x3", cluster: "beta" }, 403, "TokenWrongCluster"],
      ["malformed", { token: "not-a-token", nodeName: "x4" }, 400, "TokenMalformed"],
      ["unknown secret", { token: `${good.slice(0, 6)}.${"a".repeat(32)}`, nodeName: "x5" }, 401, "TokenInvalid"],
      ["role not allowed", { token: good, nodeName: "x6", requestedRoles: ["vpn-exit"] }, 403, "RoleNotAllowed"],
      ["bad node name", { token: good, nodeName: "Not_A_Label" }, 400, "InvalidRequest"],
    ];
    for (const [what, body, status, code] of cases) {
      const r = await enrollOnce(client, body);
      assert.ok(!r.ok, `${what} was accepted`);
      assert.equal(r.status, status, what);
      assert.equal(r.code, code, what);
      assert.ok(r.message.length > 0);
    }
    // A CSR signed by another key than the one it carries: the caller does not hold the key.
    const k1 = generateNodeKey();
    const k2 = generateNodeKey();
    const forged = await enrollOnce(client, { token: good, nodeName: "forged", csr: createCsr(k2.privateKey, k1.publicKey, "forged") });
    assert.ok(!forged.ok);
    assert.equal(forged.code, "CsrInvalid");
    assert.match(forged.message, /does not hold the private key/);
    assert.equal(await count("SELECT count(*) AS n FROM join_requests"), before);
    assert.equal(await count("SELECT used AS n FROM join_tokens WHERE name = 'for-alpha'"), 0);
    // Expired tokens are audited once and lose their Secret.
    await eventually(async () => (await count("SELECT count(*) AS n FROM audit_events WHERE action = 'token.expired' AND object_name = 'short-lived'")) === 1);
    assert.equal((await kubectl(p.kubeconfig, ["get", "secret", "-n", "fabric-system", "jointoken-short-lived"])).code, 1);
    assert.equal(await count("SELECT count(*) AS n FROM audit_events WHERE action = 'token.revoked' AND object_name = 'to-revoke'"), 1);
  });

  it("a replayed enrollment creates nothing new", async () => {
    const token = await createToken(p.kubeconfig, "replay", { cluster: "alpha", maxUses: 3 });
    const key = generateNodeKey();
    const first = await enrollOnce(client, { token, nodeName: "replayed" }, key);
    assert.ok(first.ok);
    assert.equal(first.status, 201);
    for (let i = 0; i < 3; i++) {
      const again = await enrollOnce(client, { token, nodeName: "replayed" }, key);
      assert.ok(again.ok);
      assert.equal(again.status, 200);
      assert.equal(again.body.replayed, true);
      assert.equal(again.body.joinRequest, first.body.joinRequest);
    }
    assert.equal(await count("SELECT used AS n FROM join_tokens WHERE name = 'replay'"), 1);
    assert.equal(await count("SELECT count(*) AS n FROM join_requests WHERE token_name = 'replay'"), 1);
    // The same key under another name or token is refused.
    const other = await enrollOnce(client, { token, nodeName: "someone-else" }, key);
    assert.ok(!other.ok);
    assert.equal(other.code, "KeyInUse");
  });

  it("auto-approve honours allowed roles and capabilities and nothing more", async () => {
    const token = await createToken(p.kubeconfig, "auto-relay", { cluster: "auto", maxUses: 5, autoApprove: true, allowedRoles: ["relay-node", "entry-node"] });
    const capable = await enrollOnce(client, { token, nodeName: "relay-1", requestedRoles: ["relay-node"], capabilities: ["can_route_mesh", "can_accept_node_ingress"] });
    const incapable = await enrollOnce(client, { token, nodeName: "entry-1", requestedRoles: ["entry-node"], capabilities: ["can_route_mesh"] });
    const notAllowed = await enrollOnce(client, { token, nodeName: "vpn-1", requestedRoles: ["vpn-exit"], capabilities: ["can_run_vpn_exit", "can_egress_internet"] });
    assert.ok(capable.ok && incapable.ok);
    assert.ok(!notAllowed.ok);
    assert.equal(notAllowed.code, "RoleNotAllowed");
    // The capable one is approved without anyone deciding and gets its FabricNode.
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "joinrequest", capable.body.joinRequest, "-o", "jsonpath={.status.conditions[?(@.type==\"Approved\")].reason}"])).stdout === "AutoApproved", 30_000);
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "fabricnode", "auto.relay-1", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])).stdout === "True", 30_000);
    // The incapable one is flagged and left for an operator.
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "joinrequest", incapable.body.joinRequest, "-o", "jsonpath={.status.unsupportedRoles}"])).stdout.includes("entry-node"));
    const st = await kubectl(p.kubeconfig, ["get", "joinrequest", incapable.body.joinRequest, "-o", "json"]);
    const obj = JSON.parse(st.stdout) as { status: { conditions: Array<{ type: string; status: string; message: string }>; certificate?: string } };
    assert.equal(obj.status.certificate, undefined);
    const caps = obj.status.conditions.find((c) => c.type === "CapabilitiesSufficient");
    assert.equal(caps?.status, "False");
    assert.match(caps?.message ?? "", /entry-node needs can_accept_client_ingress/);
    assert.equal(await count("SELECT count(*) AS n FROM nodes WHERE name = 'auto.entry-1'"), 0);
    // autoApprove on a token of a Manual cluster does nothing.
    const manual = await createToken(p.kubeconfig, "auto-in-manual", { cluster: "alpha", autoApprove: true });
    const m = await enrollOnce(client, { token: manual, nodeName: "manual-1" });
    assert.ok(m.ok);
    await eventually(async () => (await kubectl(p.kubeconfig, ["get", "joinrequest", m.body.joinRequest, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}"])).stdout === "AwaitingDecision");
    assert.equal(await count("SELECT count(*) AS n FROM nodes WHERE name = 'alpha.manual-1'"), 0);
  });

  it("joins with the agent code, is approved with kubectl, authenticates with the certificate, and is refused after revocation", async () => {
    const token = await createToken(p.kubeconfig, "flow", { cluster: "beta" });
    const stateDir = tempStateDir("fabric-agent-");
    const lines: string[] = [];
    const joined = join({ server: p.server, token, caHash: p.caHash, stateDir, nodeName: "host-a", cluster: "beta", pollIntervalMs: 200, onStatus: (l) => lines.push(l) });
    const jr = await eventually(async () => {
      const g = await kubectl(p.kubeconfig, ["get", "joinrequests", "-l", "accessfabric.io/jointoken=flow", "-o", "jsonpath={.items[0].metadata.name}"]);
      return g.stdout !== "" ? g.stdout : undefined;
    });
    await eventually(() => lines.some((l) => l.includes("Pending")));
    const patch = await kubectl(p.kubeconfig, ["patch", "joinrequest", jr, "--type", "merge", "-p", '{"spec":{"decision":"Approved","decisionReason":"known host"}}']);
    assert.equal(patch.code, 0, patch.stderr);
    const id = await joined;
    const cert = new X509Certificate(id.certPem);
    const ca = new X509Certificate(id.caPem);
    assert.ok(cert.verify(ca.publicKey));
    assert.ok(cert.checkIssued(ca));
    assert.match(cert.subjectAltName ?? "", /URI:spiffe:\/\/accessfabric\.io\/cluster\/beta\/node\/beta\.host-a/);
    const fcCa = await kubectl(p.kubeconfig, ["get", "fabriccluster", "beta", "-o", "jsonpath={.status.caFingerprint}"]);
    const { certificateFingerprint } = await import("../../lib/crypto/cluster-keys.js");
    assert.equal(certificateFingerprint(id.caPem), fcCa.stdout);

    const mtls = new AgentApiClient(p.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
    try {
      const who = await mtls.request<{ cluster: string; node: string; membership: string }>("GET", "/v1/identity");
      assert.deepEqual([who.body.cluster, who.body.node, who.body.membership], ["beta", "beta.host-a", "Active"]);
      // Without a certificate: refused.
      await assert.rejects(client.request("GET", "/v1/identity"), (e: unknown) => e instanceof AgentApiRequestError && e.code === "ClientCertificateRequired");
      const rv = await kubectl(p.kubeconfig, ["patch", "fabricnode", "beta.host-a", "--type", "merge", "-p", '{"spec":{"membership":"Revoked","membershipReason":"host retired"}}']);
      assert.equal(rv.code, 0, rv.stderr);
      // Same kept-alive connection, same certificate: refused from the next request on.
      const err = await eventually(async () => {
        try {
          await mtls.request("GET", "/v1/identity");
          return undefined;
        } catch (e) {
          return e instanceof AgentApiRequestError ? e : undefined;
        }
      });
      assert.equal(err.status, 403);
      assert.equal(err.code, "IdentityRevoked");
      await eventually(async () => (await kubectl(p.kubeconfig, ["get", "fabricnode", "beta.host-a", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}"])).stdout === "Revoked");
    } finally {
      mtls.close();
    }
    const actions = (await p.cp.db.pool.query<{ action: string }>("SELECT action FROM audit_events WHERE cluster = 'beta' ORDER BY id")).rows.map((r) => r.action);
    for (const a of ["token.created", "token.used", "joinrequest.received", "joinrequest.approved", "node.created", "certificate.issued", "node.membership.changed", "certificate.revoked"]) {
      assert.ok(actions.includes(a), `audit lacks ${a}: ${actions.join(",")}`);
    }
    const chain = await verifyChain(p.cp.db.pool);
    assert.ok(chain.ok);
  });

  it("the same host joins two clusters: two FabricNodes, two keys, two certificates", async () => {
    const stateDir = tempStateDir("fabric-agent-");
    const tA = await createToken(p.kubeconfig, "two-a", { cluster: "alpha" });
    const tB = await createToken(p.kubeconfig, "two-b", { cluster: "beta" });
    const approveAll = setInterval(() => {
      void kubectl(p.kubeconfig, ["get", "joinrequests", "-l", "accessfabric.io/jointoken in (two-a,two-b)", "-o", "name"]).then(async (g) => {
        for (const n of g.stdout.trim().split("\n").filter((x) => x !== "")) await kubectl(p.kubeconfig, ["patch", n, "--type", "merge", "-p", '{"spec":{"decision":"Approved"}}']);
      });
    }, 500);
    try {
      const a = await join({ server: p.server, token: tA, caHash: p.caHash, stateDir, nodeName: "dual", pollIntervalMs: 200 });
      const b = await join({ server: p.server, token: tB, caHash: p.caHash, stateDir, nodeName: "dual", pollIntervalMs: 200 });
      assert.notEqual(a.dir, b.dir);
      assert.notEqual(a.keyPem, b.keyPem);
      assert.notEqual(a.info.serial, b.info.serial);
      assert.notEqual(a.caPem, b.caPem);
      const hosts = await p.cp.db.pool.query<{ name: string; host_fingerprint: string }>("SELECT name, host_fingerprint FROM nodes WHERE node_name = 'dual' ORDER BY name");
      assert.deepEqual(hosts.rows.map((r) => r.name), ["alpha.dual", "beta.dual"]);
      assert.equal(hosts.rows[0]?.host_fingerprint, hosts.rows[1]?.host_fingerprint);
    } finally {
      clearInterval(approveAll);
    }
  });
});
