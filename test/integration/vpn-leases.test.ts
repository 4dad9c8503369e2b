/**
 * VPN connection leases over the agent API with real mTLS node identities
 * (nodes enrolled by the agent's join code), the real API server (kubectl
 * objects), the controllers and PostgreSQL.
 *
 * Part 1 (a control plane in this process): who is refused (no role, not
 * in allowedNodes, Disabled, Revoked, another cluster, another
 * organization, an unknown connection: 403 and no grant row); who gets the
 * credential (only the current holder with the current token; every fetch
 * audited); what snapshots carry (only the node's own organization's
 * connections it may own, never a secret); hostile bodies on every route
 * (4xx, never 5xx); a deposed control plane cannot grant (503 NotLeader).
 *
 * Part 2 (vpn-leases-chaos below): 50 contending lease clients.
 */
import assert from "node:assert/strict";
import { AgentApi, startAgentApi } from "../../agentapi/server.js";
import { kubeSecretReader } from "../../agentapi/vpn-routes.js";
import { CoreV1Api } from "@kubernetes/client-node";
import type { AgentApiClient } from "../../agent/http/client.js";
import { VpnLeaseClient } from "../../agent/vpn/lease-client.js";
import { PgAuthority } from "../../controllers/runtime/authority.js";
import { loadKubeConfig } from "../../lib/kube/kubeconfig.js";
import { logger } from "../../lib/log.js";
import type { SignedSnapshot } from "../../lib/snapshot/format.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { vpnConnectionsListing } from "../../lib/state/vpn.js";
import { eventually, kubectl } from "../support/controlplane.js";
import { createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";
import { apply, credentialSecret, ensureNamespace, heartbeat, joinFleet, nodeClient, post, vpnConnection, waitHealthy, type Fleet } from "../support/vpn-fleet.js";

const A = "vpn-a";
const B = "vpn-b";
const CRED = "[Interface]\nPrivateKey = aGVsbG8taGVsbG8taGVsbG8taGVsbG8taGVsbG8tMTI=\nAddress = 10.99.0.2/32\n[Peer]\nPublicKey = d29ybGQtd29ybGQtd29ybGQtd29ybGQtd29ybGQtMTI=\nEndpoint = 10.88.0.2:51820\nAllowedIPs = 10.20.0.0/16\nPersistentKeepalive = 5\n";

describe("VPN leases over the agent API: refusals, credentials, snapshots, hostile bodies, deposed control plane", function () {
  this.timeout(300_000);
  let p: EnrollmentPlane;
  let fleetA: Fleet;
  let fleetB: Fleet;
  const clients = new Map<string, AgentApiClient>();
  const c = (n: string): AgentApiClient => clients.get(n)!;
  const fq = (cluster: string, n: string): string => `${cluster}.${n}`;
  const grantRows = async (conn: string): Promise<Array<{ holder: string; token: string }>> =>
    (await p.cp.db.pool.query<{ holder: string; token: string }>("SELECT holder, token FROM vpn_grants WHERE connection = $1 ORDER BY token", [conn])).rows;
  const snapshotOf = async (node: string): Promise<{ bytes: string; snap: SignedSnapshot } | undefined> => {
    const r = await p.cp.db.pool.query<{ bytes: Buffer }>("SELECT bytes FROM node_snapshots WHERE node = $1", [node]);
    const b = r.rows[0]?.bytes.toString("utf8");
    return b === undefined ? undefined : { bytes: b, snap: JSON.parse(b) as SignedSnapshot };
  };

  before(async () => {
    p = await startEnrollmentPlane();
    for (const cl of [A, B]) {
      await apply(p.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: cl }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" } } });
      const w = await kubectl(p.kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${cl}`, "--timeout=60s"]);
      assert.equal(w.code, 0, w.stderr);
    }
    const tokA = await createToken(p.kubeconfig, "vpn-a-join", { cluster: A, maxUses: 20, autoApprove: true });
    const tokB = await createToken(p.kubeconfig, "vpn-b-join", { cluster: B, maxUses: 5, autoApprove: true });
    fleetA = await joinFleet({ server: p.server, caHash: p.caHash, token: tokA, cluster: A, names: ["good-1", "good-2", "norole", "notallowed", "disabled", "revoked", "orgb"] });
    fleetB = await joinFleet({ server: p.server, caHash: p.caHash, token: tokB, cluster: B, names: ["other"] });
    for (const [n, id] of fleetA.ids) clients.set(n, nodeClient(p.server, id));
    clients.set("other", nodeClient(p.server, fleetB.ids.get("other")!));
    let seq = 1;
    for (const cl of clients.values()) await heartbeat(cl, seq++);
    await waitHealthy((sql, params) => p.cp.db.pool.query(sql, params), [...[...fleetA.ids.keys()].map((n) => fq(A, n)), fq(B, "other")]);
    await ensureNamespace(p.kubeconfig, "org-a");
    await ensureNamespace(p.kubeconfig, "org-b");
    await apply(p.kubeconfig, credentialSecret("org-a", "exit-creds", CRED));
    await apply(p.kubeconfig, {
      apiVersion: "accessfabric.io/v1alpha1",
      kind: "RoleAssignment",
      metadata: { name: "vpn-exits" },
      spec: { cluster: A, role: "vpn-exit", nodeNames: ["good-1", "good-2", "notallowed", "disabled", "revoked", "orgb"].map((n) => fq(A, n)) },
    });
    await apply(p.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "vpn-exits-b" }, spec: { cluster: B, role: "vpn-exit", nodeNames: [fq(B, "other")] } });
    await apply(
      p.kubeconfig,
      vpnConnection("org-a", "exit", {
        cluster: A,
        mode: "Exit",
        allowedNodes: ["good-1", "good-2", "norole", "disabled", "revoked"].map((n) => fq(A, n)).concat([fq(B, "other")]),
        routePolicies: [
          { name: "office", destination: "10.20.0.0/16" },
          { name: "keep-out", destination: "10.20.5.0/24", action: "Exclude" },
        ],
        credentialSecretRef: { name: "exit-creds" },
        leaseDuration: "5s",
      }),
    );
    await apply(p.kubeconfig, vpnConnection("org-b", "private", { cluster: A, mode: "Exit", allowedNodes: [fq(A, "orgb")], leaseDuration: "5s" }));
    // Eligibility as the controller sees it (also the agent API's rule): good-1, good-2 eligible, the rest blocked.
    await eventually(async () => {
      const r = await kubectl(p.kubeconfig, ["get", "vpnconnection", "-n", "org-a", "exit", "-o", "jsonpath={.status.eligibleNodes}"]);
      return r.stdout.includes("good-1") && r.stdout.includes("good-2");
    }, 60_000, 200);
    // Disable and revoke after the role is granted, so those are the reasons.
    await eventually(async () => Number((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM node_roles WHERE role = 'vpn-exit'")).rows[0]?.n) === 7, 30_000, 100);
    for (const [n, m] of [["disabled", "Disabled"], ["revoked", "Revoked"]] as const) {
      const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", fq(A, n), "--type", "merge", "-p", JSON.stringify({ spec: { membership: m } })]);
      assert.equal(r.code, 0, r.stderr);
    }
    await eventually(async () => Number((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM nodes WHERE name = ANY($1::text[]) AND membership <> 'Active'", [[fq(A, "disabled"), fq(A, "revoked")]])).rows[0]?.n) === 2, 30_000, 100);
  });
  after(async () => {
    await p?.stop();
    fleetA?.cleanup();
    fleetB?.cleanup();
  });

  it("grants the first eligible node, answers busy to the next, and refuses every ineligible one with 403 and no grant", async () => {
    const conn = "org-a/exit";
    const g = await post(c("good-1"), "/v1/vpn/lease/acquire", { connection: conn });
    assert.equal(g.status, 200, g.message);
    const granted = g.body as { granted: boolean; token: number; ttlMs: number; expiresAt: string };
    assert.equal(granted.granted, true);
    assert.equal(granted.ttlMs, 5000);
    assert.ok(granted.token >= 1);
    const busy = await post(c("good-2"), "/v1/vpn/lease/acquire", { connection: conn });
    assert.equal(busy.status, 200);
    assert.equal((busy.body as { granted: boolean }).granted, false);
    assert.ok((busy.body as { retryAfterMs: number }).retryAfterMs > 0);

    const refused: Record<string, { status: number; code: string; message: string }> = {};
    for (const n of ["norole", "notallowed", "disabled", "revoked", "orgb", "other"]) refused[n] = await post(c(n), "/v1/vpn/lease/acquire", { connection: conn });
    for (const [n, r] of Object.entries(refused)) assert.equal(r.status, 403, `${n}: ${r.status} ${r.code} ${r.message}`);
    assert.equal(refused.norole?.code, "NotEligible");
    assert.match(refused.norole?.message ?? "", /MissingRole/);
    assert.match(refused.disabled?.message ?? "", /NodeDisabled/);
    assert.equal(refused.revoked?.code, "IdentityRevoked");
    // Not listed, another organization, another cluster and an unknown connection look the same.
    const unknown = await post(c("good-1"), "/v1/vpn/lease/acquire", { connection: "org-a/nonexistent" });
    const otherOrg = await post(c("good-1"), "/v1/vpn/lease/acquire", { connection: "org-b/private" });
    for (const r of [refused.notallowed, refused.orgb, refused.other, unknown, otherOrg]) {
      assert.equal(r?.status, 403);
      assert.equal(r?.message, "no such connection for this node");
    }
    assert.deepEqual((await grantRows(conn)).map((r) => r.holder), [fq(A, "good-1")]);
    assert.deepEqual(await grantRows("org-a/nonexistent"), []);
    // The org-b node may own its own connection.
    const own = await post(c("orgb"), "/v1/vpn/lease/acquire", { connection: "org-b/private" });
    assert.equal((own.body as { granted: boolean }).granted, true, own.message);
  });

  it("hands the credential only to the current holder with the current token, auditing every fetch", async () => {
    const conn = "org-a/exit";
    const holder = (await grantRows(conn)).at(-1)!;
    const token = Number(holder.token);
    const auditCount = async (action: string): Promise<number> => Number((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM audit_events WHERE action = $1 AND object_name = $2", [action, conn])).rows[0]?.n);
    const ok = await post(c("good-1"), "/v1/vpn/credential", { connection: conn, token });
    assert.equal(ok.status, 200, ok.message);
    assert.equal((ok.body as { credential: string }).credential, CRED);
    const wrong = [
      await post(c("good-2"), "/v1/vpn/credential", { connection: conn, token }),
      await post(c("good-1"), "/v1/vpn/credential", { connection: conn, token: token + 1 }),
      await post(c("good-1"), "/v1/vpn/credential", { connection: conn, token: token - 1 || 1000 }),
      await post(c("orgb"), "/v1/vpn/credential", { connection: conn, token }),
      await post(c("other"), "/v1/vpn/credential", { connection: conn, token }),
    ];
    for (const r of wrong) assert.deepEqual([r.status, r.code], [403, "NotHolder"], r.message);
    assert.equal(await auditCount("vpn.credential.fetched"), 1);
    assert.equal(await auditCount("vpn.credential.refused"), 5);
    // Renewals sent together (group-committed by the store): the right token works; a stale token and
    // another node's renewal are LeaseLost on their own; the lease counts one renewal. After release
    // the credential is refused.
    const lc = new VpnLeaseClient(c("good-1"));
    const renewalsBefore = (await p.cp.db.pool.query<{ renewals: number }>("SELECT renewals FROM vpn_leases WHERE connection = $1", [conn])).rows[0]!.renewals;
    const [renewed, stale, notHolder] = await Promise.all([
      lc.renew({ connection: conn, token, ttlMs: 5000, sentAt: performance.now(), deadline: performance.now() + 3000 }),
      post(c("good-1"), "/v1/vpn/lease/renew", { connection: conn, token: token + 7 }),
      post(c("good-2"), "/v1/vpn/lease/renew", { connection: conn, token }),
    ]);
    assert.equal(renewed.kind, "renewed");
    assert.deepEqual([stale.status, stale.code], [409, "LeaseLost"]);
    assert.deepEqual([notHolder.status, notHolder.code], [409, "LeaseLost"]);
    assert.equal((await p.cp.db.pool.query<{ renewals: number }>("SELECT renewals FROM vpn_leases WHERE connection = $1", [conn])).rows[0]!.renewals, renewalsBefore + 1);
    const other = await post(c("good-2"), "/v1/vpn/lease/release", { connection: conn, token });
    assert.deepEqual(other.body, { released: false });
    const rel = await post(c("good-1"), "/v1/vpn/lease/release", { connection: conn, token });
    assert.deepEqual(rel.body, { released: true });
    const after = await post(c("good-1"), "/v1/vpn/credential", { connection: conn, token });
    assert.deepEqual([after.status, after.code], [403, "NotHolder"]);
    assert.equal(await auditCount("vpn.credential.refused"), 6);
    assert.equal(await auditCount("vpn.lease.released"), 1);
    // The next grant gets a higher token.
    const next = await post(c("good-2"), "/v1/vpn/lease/acquire", { connection: conn });
    assert.ok((next.body as { token: number }).token > token);
  });

  it("puts a connection only in the snapshots of the nodes that may own it, never a secret", async () => {
    const conn = "org-a/exit";
    const good = await eventually(async () => {
      const s = await snapshotOf(fq(A, "good-2"));
      return s?.snap.payload.vpn?.assignments.length === 1 ? s : undefined;
    }, 30_000, 200);
    assert.deepEqual(good.snap.payload.vpn?.assignments, [
      {
        connection: conn,
        mode: "Exit",
        preference: 1,
        routes: [
          { destination: "10.20.0.0/16", action: "Route", metric: 100 },
          { destination: "10.20.5.0/24", action: "Exclude", metric: 100 },
        ],
        leaseTtlMs: 5000,
        hasCredentialRef: true,
        enabled: true,
      },
    ]);
    for (const n of ["good-1", "good-2", "norole", "notallowed", "orgb"]) {
      const s = await snapshotOf(fq(A, n));
      assert.ok(s !== undefined, n);
      assert.ok(!s.bytes.includes("PrivateKey") && !s.bytes.includes("aGVsbG8t"), `${n}: a secret in the snapshot`);
      if (n !== "good-1" && n !== "good-2") assert.ok(!(s.snap.payload.vpn?.assignments ?? []).some((a) => a.connection === conn), `${n} sees ${conn}`);
    }
    const orgb = await snapshotOf(fq(A, "orgb"));
    assert.deepEqual(orgb?.snap.payload.vpn?.assignments.map((a) => a.connection), ["org-b/private"]);
    // The node of the other cluster, although named in allowedNodes, is never listed: the contributor reads by cluster.
    assert.deepEqual(await vpnConnectionsListing(p.cp.db.pool, B, [fq(B, "other")]), []);
    const other = await snapshotOf(fq(B, "other"));
    assert.equal(other?.snap.payload.vpn, undefined);
  });

  it("answers hostile bodies on every VPN route with a 4xx, never a 5xx, and stores nothing", async () => {
    const before = (await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM vpn_grants")).rows[0]?.n;
    const bodies: unknown[] = [
      null,
      [],
      "x",
      42,
      {},
      { connection: 7 },
      { connection: "no-slash" },
      { connection: "org-a/exit/extra" },
      { connection: "ORG-A/exit" },
      { connection: "org-a/exit", token: "1" },
      { connection: "org-a/exit", token: -1 },
      { connection: "org-a/exit", token: 1.5 },
      { connection: "org-a/exit", token: 2 ** 60 },
      { connection: "org-a/exit", token: 1, extra: true },
      { connection: `org-a/${"a".repeat(400)}`, token: 1 },
      { connection: "org-a/exit", token: { $gt: 0 } },
      JSON.parse(`${"[".repeat(100)}${"]".repeat(100)}`),
      { connection: "org-a/\u0000exit", token: 1 },
      { connection: "org-a/exit", token: 1, padding: "x".repeat(10_000) },
    ];
    for (const route of ["/v1/vpn/lease/acquire", "/v1/vpn/lease/renew", "/v1/vpn/lease/release", "/v1/vpn/credential"]) {
      for (const b of bodies) {
        const r = await post(c("good-1"), route, b);
        assert.ok(r.status >= 400 && r.status < 500 && r.status !== 404, `${route} ${JSON.stringify(b).slice(0, 60)} -> ${r.status} ${r.code}`);
      }
    }
    assert.equal((await p.cp.db.pool.query<{ n: string }>("SELECT count(*) AS n FROM vpn_grants")).rows[0]?.n, before);
  });

  it("shows the lease, eligibility reasons and an intact audit chain through the API", async () => {
    const st = await eventually(async () => {
      const r = await kubectl(p.kubeconfig, ["get", "vpnconnection", "-n", "org-a", "exit", "-o", "json"]);
      const s = (JSON.parse(r.stdout) as { status?: { activeLease?: { holder: string; fencingToken: number }; blockedNodes?: Array<{ node: string; reason: string }>; conditions?: Array<{ type: string; status: string }> } }).status;
      return s?.activeLease?.holder === fq(A, "good-2") ? s : undefined;
    }, 30_000, 200);
    const reasons = Object.fromEntries((st.blockedNodes ?? []).map((b) => [b.node, b.reason]));
    assert.deepEqual(reasons, { [fq(A, "norole")]: "MissingRole", [fq(A, "disabled")]: "NodeDisabled", [fq(A, "revoked")]: "NodeRevoked", [fq(B, "other")]: "OtherCluster" });
    assert.equal(st.conditions?.find((x) => x.type === "Ready")?.status, "True");
    const chain = await verifyChain(p.cp.db.pool);
    assert.equal(chain.ok, true, JSON.stringify(chain));
  });

  it("a deposed control plane cannot grant (503 NotLeader), the current one can", async () => {
    const pool = p.cp.db.pool;
    const deposed = new PgAuthority(pool, { log: logger("deposed") });
    const current = new PgAuthority(pool, { log: logger("current") });
    await deposed.acquire("deposed-test");
    await current.acquire("current-test");
    const kc = loadKubeConfig(p.kubeconfig);
    const apis: AgentApi[] = [];
    try {
      for (const fence of [deposed, current]) {
        apis.push(
          await startAgentApi({
            stateDir: p.stateDir,
            host: "127.0.0.1",
            port: 0,
            pool,
            api: p.api,
            actor: "agentapi/deposed-test",
            log: logger("agentapi-test"),
            rateLimit: { burst: 1000, perSecond: 1000 },
            vpn: { fence, readSecret: kubeSecretReader(kc.makeApiClient(CoreV1Api)) },
          }),
        );
      }
      const conn = "org-b/private";
      const held = (await grantRows(conn)).at(-1)!;
      await post(c("orgb"), "/v1/vpn/lease/release", { connection: conn, token: Number(held.token) });
      const before = await grantRows(conn);
      const viaDeposed = await post(nodeClient(apis[0]!.url, fleetA.ids.get("orgb")!), "/v1/vpn/lease/acquire", { connection: conn });
      assert.deepEqual([viaDeposed.status, viaDeposed.code], [503, "NotLeader"]);
      const renewDeposed = await post(nodeClient(apis[0]!.url, fleetA.ids.get("orgb")!), "/v1/vpn/lease/renew", { connection: conn, token: 1 });
      assert.equal(renewDeposed.status, 503);
      assert.deepEqual(await grantRows(conn), before);
      const viaCurrent = await post(nodeClient(apis[1]!.url, fleetA.ids.get("orgb")!), "/v1/vpn/lease/acquire", { connection: conn });
      assert.equal((viaCurrent.body as { granted: boolean }).granted, true, viaCurrent.message);
    } finally {
      for (const a of apis) await a.stop();
    }
  });
});
