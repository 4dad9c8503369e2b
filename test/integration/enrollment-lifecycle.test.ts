/**
 * Enrollment lifecycle against the real API server, real PostgreSQL, the
 * real kubectl and the agent's own code: membership Disabled / Active /
 * Revoked (final), the brute-force guard and the per-address rate limit of
 * the enrollment API (the latter through a real control plane process and
 * its --enroll-rate-limit flag), garbage collection of decided JoinRequests
 * and of expired JoinTokens, renewal of an expired certificate within (and
 * not beyond) the grace period, and fencing: a control plane whose
 * authority term was superseded approves, issues, renews and revokes
 * nothing.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { rmSync } from "node:fs";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import { generateNodeKey, type StoredIdentity } from "../../agent/enroll/identity-store.js";
import { fetchPinnedCa, join } from "../../agent/enroll/join.js";
import { renewIdentity } from "../../agent/enroll/renew.js";
import { PgAuthority } from "../../controllers/runtime/index.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { createCsr } from "../../lib/crypto/x509.js";
import { embeddedDatabaseUrl } from "../../lib/db/embedded-postgres.js";
import { createPool } from "../../lib/db/pool.js";
import { signPoll, type EnrollRequest, type PollResponse } from "../../lib/enrollment/protocol.js";
import { logger } from "../../lib/log.js";
import { eventually, kubectl, spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken, enrollOnce, pinnedClient, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

type Pool = EnrollmentPlane["cp"]["db"]["pool"];

const count = async (pool: Pool, sql: string, args: unknown[] = []): Promise<number> => Number((await pool.query<{ n: string }>(sql, args)).rows[0]?.n ?? -1);

/** kubectl get -o jsonpath, "" when the object does not exist. */
async function jsonpath(kubeconfig: string, what: string[], path: string): Promise<string> {
  const g = await kubectl(kubeconfig, ["get", ...what, "-o", `jsonpath=${path}`]);
  return g.code === 0 ? g.stdout : "";
}

/** True once kubectl reports the object as NotFound. */
async function gone(kubeconfig: string, what: string[]): Promise<boolean> {
  const g = await kubectl(kubeconfig, ["get", ...what]);
  return g.code !== 0 && /NotFound|not found/.test(g.stderr);
}

/** Joins with the agent code and approves the request with kubectl; resolves with the stored identity. */
async function joinApproved(p: EnrollmentPlane, o: { token: string; tokenName: string; cluster: string; nodeName: string }): Promise<StoredIdentity> {
  const stateDir = tempStateDir("fabric-agent-");
  const joined = join({ server: p.server, token: o.token, caHash: p.caHash, stateDir, nodeName: o.nodeName, cluster: o.cluster, pollIntervalMs: 200 });
  const jr = await eventually(async () => (await jsonpath(p.kubeconfig, ["joinrequests", "-l", `accessfabric.io/jointoken=${o.tokenName}`], "{.items[0].metadata.name}")) || undefined, 30_000);
  const ap = await kubectl(p.kubeconfig, ["patch", "joinrequest", jr, "--type", "merge", "-p", '{"spec":{"decision":"Approved","decisionReason":"test"}}']);
  assert.equal(ap.code, 0, ap.stderr);
  return joined;
}

/** The body of an enrollment with a fresh key. */
function enrollBody(token: string, nodeName: string): EnrollRequest {
  const key = generateNodeKey();
  return {
    token,
    nodeName,
    hostFingerprint: `sha256:${"cd".repeat(32)}`,
    capabilities: [],
    facts: { hostname: nodeName },
    requestedRoles: [],
    csr: createCsr(key.privateKey, key.publicKey, nodeName),
  };
}

/** One POST /v1/enroll from a chosen local address (the rate limits are per client address). */
function enrollFrom(server: string, ca: string, localAddress: string, body: EnrollRequest): Promise<{ status: number; code?: string; retryAfter?: string }> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL("/v1/enroll", server),
      { method: "POST", ca, localAddress, agent: false, headers: { "Content-Type": "application/json", "Content-Length": String(payload.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error?: { code?: string } };
          const ra = res.headers["retry-after"];
          resolve({ status: res.statusCode ?? 0, code: parsed.error?.code, retryAfter: typeof ra === "string" ? ra : undefined });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** Calls fn until it throws an AgentApiRequestError; returns that error. */
async function refusal(fn: () => Promise<unknown>, timeoutMs = 20_000): Promise<AgentApiRequestError> {
  return eventually(async () => {
    try {
      await fn();
      return undefined;
    } catch (e) {
      return e instanceof AgentApiRequestError ? e : undefined;
    }
  }, timeoutMs);
}

describe("enrollment lifecycle: membership, brute-force guard", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "life");
  });
  after(async () => {
    await p?.stop();
  });

  it("membership Disabled keeps the identity (reported to handlers), Active again restores it, Revoked is final (RevokedIsFinal)", async () => {
    const token = await createToken(p.kubeconfig, "member", { cluster: "life" });
    const id = await joinApproved(p, { token, tokenName: "member", cluster: "life", nodeName: "host-m" });
    const node = "life.host-m";
    const fnode = ["fabricnode", node];
    const ready = "{.status.conditions[?(@.type==\"Ready\")].reason}";
    await eventually(async () => (await jsonpath(p.kubeconfig, fnode, ready)) === "Active", 30_000);
    const mtls = new AgentApiClient(p.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
    let renewed: AgentApiClient | undefined;
    try {
      const who = async () => (await mtls.request<{ node: string; serial: string; membership: string }>("GET", "/v1/identity")).body;
      assert.equal((await who()).membership, "Active");

      // Disabled: the same certificate still authenticates; handlers see membership Disabled.
      const dis = await kubectl(p.kubeconfig, ["patch", "fabricnode", node, "--type", "merge", "-p", '{"spec":{"membership":"Disabled","membershipReason":"maintenance"}}']);
      assert.equal(dis.code, 0, dis.stderr);
      const disabled = await eventually(async () => {
        const w = await who();
        return w.membership === "Disabled" ? w : undefined;
      });
      assert.equal(disabled.node, node);
      assert.equal(disabled.serial, id.info.serial);
      await eventually(async () => (await jsonpath(p.kubeconfig, fnode, ready)) === "Disabled");
      assert.equal(await jsonpath(p.kubeconfig, fnode, "{.status.identity.certificateSerial}"), id.info.serial);
      const ident = await p.cp.db.pool.query<{ status: string }>("SELECT status FROM node_identities WHERE serial = $1", [id.info.serial]);
      assert.equal(ident.rows[0]?.status, "active");
      const changed = await p.cp.db.pool.query<{ details: { from: string; to: string; reason: string } }>(
        "SELECT details FROM audit_events WHERE action = 'node.membership.changed' AND object_name = $1 ORDER BY id",
        [node],
      );
      assert.deepEqual(changed.rows.map((r) => [r.details.from, r.details.to, r.details.reason]), [["Active", "Disabled", "maintenance"]]);

      // A disabled node keeps its identity alive: it may renew.
      const stateDir = id.dir.replace(/\/clusters\/life$/, "");
      const next = await renewIdentity(stateDir, id);
      assert.notEqual(next.info.serial, id.info.serial);
      renewed = new AgentApiClient(p.server, { ca: next.serverCaPem, cert: next.certPem, key: next.keyPem });
      const client = renewed;
      const whoNext = async () => (await client.request<{ serial: string; membership: string }>("GET", "/v1/identity")).body;
      const nowWho = await whoNext();
      assert.equal(nowWho.serial, next.info.serial);
      assert.equal(nowWho.membership, "Disabled");

      // Back to Active.
      const act = await kubectl(p.kubeconfig, ["patch", "fabricnode", node, "--type", "merge", "-p", '{"spec":{"membership":"Active"}}']);
      assert.equal(act.code, 0, act.stderr);
      await eventually(async () => (await whoNext()).membership === "Active");
      await eventually(async () => (await jsonpath(p.kubeconfig, fnode, ready)) === "Active");

      // Revoked is final: setting it back does nothing.
      const rv = await kubectl(p.kubeconfig, ["patch", "fabricnode", node, "--type", "merge", "-p", '{"spec":{"membership":"Revoked","membershipReason":"stolen"}}']);
      assert.equal(rv.code, 0, rv.stderr);
      const err = await refusal(() => whoNext());
      assert.equal(err.status, 403);
      assert.equal(err.code, "IdentityRevoked");
      await eventually(async () => (await jsonpath(p.kubeconfig, fnode, ready)) === "Revoked");
      const back = await kubectl(p.kubeconfig, ["patch", "fabricnode", node, "--type", "merge", "-p", '{"spec":{"membership":"Active"}}']);
      assert.equal(back.code, 0, back.stderr);
      await eventually(async () => (await jsonpath(p.kubeconfig, fnode, ready)) === "RevokedIsFinal");
      assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM nodes WHERE name = $1 AND membership = 'Revoked'", [node]), 1);
      assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM node_identities WHERE node = $1 AND status <> 'revoked'", [node]), 0);
      await assert.rejects(whoNext(), (e: unknown) => e instanceof AgentApiRequestError && e.code === "IdentityRevoked");
      await assert.rejects(renewIdentity(stateDir, next), (e: unknown) => e instanceof AgentApiRequestError && e.code === "IdentityRevoked");
      const moves = await p.cp.db.pool.query<{ details: { to: string } }>("SELECT details FROM audit_events WHERE action = 'node.membership.changed' AND object_name = $1 ORDER BY id", [node]);
      assert.deepEqual(moves.rows.map((r) => r.details.to), ["Disabled", "Active", "Revoked"]);
    } finally {
      mtls.close();
      renewed?.close();
    }
    assert.ok((await verifyChain(p.cp.db.pool)).ok);
  });

  it("failed token checks from one address are limited (429 + Retry-After); nothing is created, other addresses are unaffected", async () => {
    const token = await createToken(p.kubeconfig, "guarded", { cluster: "life", maxUses: 5 });
    const ca = await fetchPinnedCa(p.server, p.caHash);
    const attacker = "127.0.0.2";
    const wrong = `${token.slice(0, 6)}.${"z".repeat(32)}`;
    const before = await count(p.cp.db.pool, "SELECT count(*) AS n FROM join_requests");
    // The guard allows a burst of 20 failed checks (then one per 5 s): guesses are answered 401 until it closes.
    let failed = 0;
    let limited: Awaited<ReturnType<typeof enrollFrom>> | undefined;
    for (let i = 0; i < 40 && limited === undefined; i++) {
      const r = await enrollFrom(p.server, ca, attacker, enrollBody(wrong, `guess-${i}`));
      if (r.status === 401) {
        assert.equal(r.code, "TokenInvalid");
        failed++;
      } else limited = r;
    }
    assert.ok(limited !== undefined, "the guard never closed");
    assert.ok(failed >= 20 && failed <= 22, `${failed} guesses answered before the guard closed`);
    assert.equal(limited.status, 429);
    assert.equal(limited.code, "RateLimited");
    assert.ok(Number(limited.retryAfter) >= 1, `Retry-After ${String(limited.retryAfter)}`);
    // Even the right token is refused from that address now, and nothing is written.
    const right = await enrollFrom(p.server, ca, attacker, enrollBody(token, "honest-from-attacker"));
    assert.equal(right.status, 429);
    assert.equal(right.code, "RateLimited");
    assert.ok(Number(right.retryAfter) >= 1);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM join_requests"), before);
    assert.equal(await count(p.cp.db.pool, "SELECT used AS n FROM join_tokens WHERE name = 'guarded'"), 0);
    // Another address is not affected.
    const honest = await enrollFrom(p.server, ca, "127.0.0.1", enrollBody(token, "honest"));
    assert.equal(honest.status, 201);
    assert.equal(await count(p.cp.db.pool, "SELECT used AS n FROM join_tokens WHERE name = 'guarded'"), 1);
  });
});

describe("enrollment lifecycle: per-address rate limit of a control plane process (--enroll-rate-limit)", function () {
  this.timeout(180_000);
  let cp: ChildControlPlane;
  const cpDir = tempStateDir();
  let pool: Pool | undefined;

  before(async () => {
    // A burst of 8, then one request every 100 s.
    cp = await spawnControlPlane(cpDir, ["--enroll-rate-limit", "8/0.01", "--leader-elect", "false"]);
    pool = createPool(await embeddedDatabaseUrl(`${cpDir}/postgres`), { max: 2 });
  });
  after(async () => {
    await pool?.end();
    cp?.child.kill("SIGTERM");
    await cp?.exited;
    rmSync(cpDir, { recursive: true, force: true });
  });

  it("a burst beyond the limit gets 429 with Retry-After and creates nothing", async () => {
    const ready = /"msg":"control plane ready".*?"agentApi":"([^"]+)","agentApiCaHash":"([^"]+)"/.exec(cp.output());
    assert.ok(ready, cp.output());
    const [, server = "", caHash = ""] = ready;
    await applyCluster(cp.kubeconfig, "limited");
    const token = await createToken(cp.kubeconfig, "burst", { cluster: "limited", maxUses: 100 });
    const client = new AgentApiClient(server, { ca: await fetchPinnedCa(server, caHash) });
    try {
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) => enrollOnce(client, { token, nodeName: `rl-${i}` })));
      const ok = results.filter((r) => r.ok);
      const refused = results.flatMap((r) => (r.ok ? [] : [r]));
      // The CA fetch above was no enrollment request: all 8 of the burst went to enrollments.
      assert.equal(ok.length, 8, JSON.stringify(refused.slice(0, 3)));
      assert.equal(refused.length, 22);
      for (const r of refused) {
        assert.equal(r.status, 429);
        assert.equal(r.code, "RateLimited");
      }
      // Refusals carry Retry-After (the agent code reads it into retryAfterSeconds).
      const e = await refusal(() => client.request("POST", "/v1/enroll", enrollBody(token, "rl-late")));
      assert.equal(e.status, 429);
      assert.equal(e.code, "RateLimited");
      assert.ok((e.retryAfterSeconds ?? 0) >= 1, `Retry-After ${String(e.retryAfterSeconds)}`);
      const db = pool;
      assert.ok(db);
      assert.equal(await count(db, "SELECT count(*) AS n FROM join_requests WHERE token_name = 'burst'"), 8);
      assert.equal(await count(db, "SELECT used AS n FROM join_tokens WHERE name = 'burst'"), 8);
      assert.equal(await count(db, "SELECT count(*) AS n FROM audit_events WHERE action = 'joinrequest.received'"), 8);
      const list = await kubectl(cp.kubeconfig, ["get", "joinrequests", "-l", "accessfabric.io/jointoken=burst", "-o", "name"]);
      assert.equal(list.stdout.trim().split("\n").length, 8);
    } finally {
      client.close();
    }
  });
});

describe("enrollment lifecycle: garbage collection", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let client: AgentApiClient;

  before(async () => {
    p = await startEnrollmentPlane({ joinRequestRetentionMs: 2_000, expiredTokenRetentionMs: 2_000 });
    await applyCluster(p.kubeconfig, "gc");
    client = await pinnedClient(p);
  });
  after(async () => {
    client?.close();
    await p?.stop();
  });

  it("deletes decided JoinRequests (object and row) after the retention period and keeps pending ones", async () => {
    const token = await createToken(p.kubeconfig, "gc-requests", { cluster: "gc", ttl: "1h", maxUses: 3 });
    const [a, d, w] = await Promise.all(["gc-approved", "gc-denied", "gc-waiting"].map((nodeName) => enrollOnce(client, { token, nodeName })));
    assert.ok(a?.ok && d?.ok && w?.ok);
    const approved = a.body.joinRequest;
    const denied = d.body.joinRequest;
    const waiting = w.body.joinRequest;
    assert.equal((await kubectl(p.kubeconfig, ["patch", "joinrequest", approved, "--type", "merge", "-p", '{"spec":{"decision":"Approved"}}'])).code, 0);
    assert.equal((await kubectl(p.kubeconfig, ["patch", "joinrequest", denied, "--type", "merge", "-p", '{"spec":{"decision":"Denied","decisionReason":"not ours"}}'])).code, 0);
    for (const name of [approved, denied]) {
      await eventually(() => gone(p.kubeconfig, ["joinrequest", name]), 30_000);
      await eventually(async () => (await count(p.cp.db.pool, "SELECT count(*) AS n FROM join_requests WHERE name = $1", [name])) === 0, 30_000);
      await eventually(async () => (await count(p.cp.db.pool, "SELECT count(*) AS n FROM audit_events WHERE action = 'joinrequest.deleted' AND object_name = $1", [name])) === 1);
    }
    const deleted = await p.cp.db.pool.query<{ object_name: string; details: { state: string } }>("SELECT object_name, details FROM audit_events WHERE action = 'joinrequest.deleted'");
    assert.deepEqual(new Map(deleted.rows.map((r) => [r.object_name, r.details.state])), new Map([[approved, "Approved"], [denied, "Denied"]]));
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM audit_events WHERE action = 'joinrequest.denied' AND object_name = $1", [denied]), 1);
    // The approved request's node outlives it.
    assert.equal(await jsonpath(p.kubeconfig, ["fabricnode", "gc.gc-approved"], "{.metadata.name}"), "gc.gc-approved");
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM nodes WHERE name = 'gc.gc-approved'"), 1);
    // The pending one is still there (the retention has passed for it too: only decided requests go).
    assert.equal(await jsonpath(p.kubeconfig, ["joinrequest", waiting], "{.status.conditions[?(@.type==\"Ready\")].reason}"), "AwaitingDecision");
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM join_requests WHERE name = $1 AND state = 'Pending'", [waiting]), 1);
    // An agent polling a collected request learns that it is gone.
    const key = generateNodeKey();
    const ts = Date.now();
    await assert.rejects(
      client.request<PollResponse>("GET", `/v1/enroll/requests/${denied}`, undefined, { "x-fabric-timestamp": String(ts), "x-fabric-signature": signPoll(denied, ts, key.privateKey) }),
      (e: unknown) => e instanceof AgentApiRequestError && e.status === 404,
    );
  });

  it("deletes expired JoinTokens (object, row and Secret) after their retention, whether they expired unused, exhausted or revoked", async () => {
    const unused = await createToken(p.kubeconfig, "gc-expiring", { cluster: "gc", ttl: "3s" });
    const exhausted = await createToken(p.kubeconfig, "gc-exhausted", { cluster: "gc", ttl: "4s", maxUses: 1 });
    await createToken(p.kubeconfig, "gc-revoked", { cluster: "gc", ttl: "4s" });
    const keep = await createToken(p.kubeconfig, "gc-keep", { cluster: "gc", ttl: "1h" });
    assert.ok(unused && keep);
    const used = await enrollOnce(client, { token: exhausted, nodeName: "uses-it-up" });
    assert.ok(used.ok);
    assert.equal((await kubectl(p.kubeconfig, ["patch", "jointoken", "gc-revoked", "--type", "merge", "-p", '{"spec":{"revoked":true}}'])).code, 0);
    await eventually(async () => (await jsonpath(p.kubeconfig, ["jointoken", "gc-exhausted"], "{.status.conditions[0].reason}")) === "Exhausted");
    await eventually(async () => (await jsonpath(p.kubeconfig, ["jointoken", "gc-revoked"], "{.status.conditions[0].reason}")) === "Revoked");
    for (const name of ["gc-expiring", "gc-exhausted", "gc-revoked"]) {
      await eventually(() => gone(p.kubeconfig, ["jointoken", name]), 40_000);
      await eventually(async () => (await count(p.cp.db.pool, "SELECT count(*) AS n FROM join_tokens WHERE name = $1", [name])) === 0, 30_000);
      assert.ok(await gone(p.kubeconfig, ["secret", "-n", "fabric-system", `jointoken-${name}`]), `Secret of ${name} left behind`);
      await eventually(async () => (await count(p.cp.db.pool, "SELECT count(*) AS n FROM audit_events WHERE action = 'token.deleted' AND object_name = $1", [name])) === 1);
    }
    // Expiry was recorded before deletion (a revoked token stays revoked).
    for (const name of ["gc-expiring", "gc-exhausted"]) {
      assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM audit_events WHERE action = 'token.expired' AND object_name = $1", [name]), 1, name);
    }
    // The request made with the exhausted token is unaffected; the unexpired token stays.
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM join_requests WHERE name = $1", [used.body.joinRequest]), 1);
    assert.equal(await jsonpath(p.kubeconfig, ["jointoken", "gc-keep"], "{.status.conditions[0].reason}"), "Active");
    assert.equal(await jsonpath(p.kubeconfig, ["secret", "-n", "fabric-system", "jointoken-gc-keep"], "{.metadata.name}"), "jointoken-gc-keep");
    assert.ok((await verifyChain(p.cp.db.pool)).ok);
  });
});

describe("enrollment lifecycle: renewal grace after expiry", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  const graceMs = 8_000;

  before(async () => {
    p = await startEnrollmentPlane({ nodeCertLifetimeMs: 3_000, renewGraceMs: graceMs });
    await applyCluster(p.kubeconfig, "grace");
  });
  after(async () => {
    await p?.stop();
  });

  it("an expired certificate renews within the grace period (certificate.renewed audited); one expired beyond it is refused", async () => {
    const token = await createToken(p.kubeconfig, "grace-join", { cluster: "grace" });
    const first = await joinApproved(p, { token, tokenName: "grace-join", cluster: "grace", nodeName: "sleepy" });
    const stateDir = first.dir.replace(/\/clusters\/grace$/, "");
    const node = "grace.sleepy";
    // Wait until the certificate has expired: ordinary requests refuse it.
    const mtls = new AgentApiClient(p.server, { ca: first.serverCaPem, cert: first.certPem, key: first.keyPem });
    try {
      const expired = await refusal(() => mtls.request("GET", "/v1/identity"), 30_000);
      assert.equal(expired.status, 401);
      assert.equal(expired.code, "CertificateRejected");
      assert.match(expired.message, /expired/);
    } finally {
      mtls.close();
    }
    // Within the grace period the renewal route still accepts it.
    const second = await renewIdentity(stateDir, first);
    assert.notEqual(second.info.serial, first.info.serial);
    assert.notEqual(second.keyPem, first.keyPem);
    assert.ok(new Date(second.info.notAfter).getTime() > new Date(first.info.notAfter).getTime());
    const rows = await p.cp.db.pool.query<{ serial: string; status: string }>("SELECT serial, status FROM node_identities WHERE node = $1", [node]);
    assert.deepEqual(new Map(rows.rows.map((r) => [r.serial, r.status])), new Map([[first.info.serial, "superseded"], [second.info.serial, "active"]]));
    const audit = await p.cp.db.pool.query<{ details: { previousSerial: string; serial: string } }>("SELECT details FROM audit_events WHERE action = 'certificate.renewed' AND object_name = $1", [node]);
    assert.deepEqual(audit.rows.map((r) => [r.details.previousSerial, r.details.serial]), [[first.info.serial, second.info.serial]]);
    // The superseded one cannot renew again.
    await assert.rejects(renewIdentity(stateDir, first), (e: unknown) => e instanceof AgentApiRequestError && e.code === "CertificateSuperseded");

    // Now let the new certificate expire beyond the grace period: refused, nothing issued.
    const deadline = new Date(second.info.notAfter).getTime() + graceMs;
    await eventually(async () => (await jsonpath(p.kubeconfig, ["fabricnode", node], "{.status.conditions[?(@.type==\"Ready\")].reason}")) === "CertificateExpired", 30_000);
    const late = await refusal(async () => {
      if (Date.now() <= deadline) return undefined; // still within the grace: do not spend the identity
      return renewIdentity(stateDir, second);
    }, graceMs + 30_000);
    assert.equal(late.status, 401);
    assert.equal(late.code, "CertificateRejected");
    assert.match(late.message, /expired/);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM node_identities WHERE node = $1", [node]), 2);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM node_identities WHERE node = $1 AND status = 'active' AND serial = $2", [node, second.info.serial]), 1);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM audit_events WHERE action = 'certificate.renewed' AND object_name = $1", [node]), 1);
  });
});

describe("enrollment lifecycle: fencing of enrollment decisions", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let client: AgentApiClient;

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "fenced");
    client = await pinnedClient(p);
  });
  after(async () => {
    client?.close();
    await p?.stop();
  });

  /** Reconciles of one controller that ended in a terminal error (a FencedError is one), from the plane's /metrics. */
  const refusedReconciles = async (controller: string): Promise<number> => {
    const text = await (await fetch(p.cp.metricsUrl)).text();
    const line = text
      .split("\n")
      .find((l) => l.startsWith("controller_runtime_reconcile_total{") && l.includes(`controller="${controller}"`) && l.includes('result="terminal_error"'));
    return line === undefined ? 0 : Number(line.split(" ").pop());
  };

  it("a control plane whose authority term was superseded approves, issues, renews and revokes nothing", async () => {
    const token = await createToken(p.kubeconfig, "fence-join", { cluster: "fenced", maxUses: 3 });
    // A node approved while this instance still leads.
    const id = await joinApproved(p, { token, tokenName: "fence-join", cluster: "fenced", nodeName: "before" });
    await eventually(async () => (await jsonpath(p.kubeconfig, ["fabricnode", "fenced.before"], "{.status.conditions[?(@.type==\"Ready\")].reason}")) === "Active", 30_000);
    const key = generateNodeKey();
    const pending = await enrollOnce(client, { token, nodeName: "after" }, key);
    assert.ok(pending.ok);
    const jr = pending.body.joinRequest;
    await eventually(async () => (await jsonpath(p.kubeconfig, ["joinrequest", jr], "{.status.conditions[?(@.type==\"Ready\")].reason}")) === "AwaitingDecision");

    // Another instance takes the authority term on the same database.
    const heldBefore = p.cp.controllers?.term();
    assert.ok(heldBefore !== undefined);
    const usurper = new PgAuthority(p.cp.db.pool, { log: logger("test-usurper") });
    const newTerm = await usurper.acquire("usurper");
    assert.ok(newTerm > heldBefore);
    assert.equal(p.cp.controllers?.term(), heldBefore, "the deposed instance still believes it holds its term");

    const auditBefore = await count(p.cp.db.pool, "SELECT count(*) AS n FROM audit_events");
    const refusedBefore = await refusedReconciles("joinrequest");
    const ap = await kubectl(p.kubeconfig, ["patch", "joinrequest", jr, "--type", "merge", "-p", '{"spec":{"decision":"Approved","decisionReason":"too late"}}']);
    assert.equal(ap.code, 0, ap.stderr);
    // The deposed JoinRequest controller acted on the decision and was refused by the fence.
    await eventually(async () => (await refusedReconciles("joinrequest")) > refusedBefore, 30_000);
    assert.match(await jsonpath(p.kubeconfig, ["joinrequest", jr], "{.spec.decision}"), /^Approved$/);
    const row = await p.cp.db.pool.query<{ state: string; certificate_pem: string | null; fabric_node: string | null }>("SELECT state, certificate_pem, fabric_node FROM join_requests WHERE name = $1", [jr]);
    assert.deepEqual(row.rows[0], { state: "Pending", certificate_pem: null, fabric_node: null });
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM nodes WHERE name = 'fenced.after'"), 0);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM node_identities WHERE node = 'fenced.after'"), 0);
    assert.ok(await gone(p.kubeconfig, ["fabricnode", "fenced.after"]));
    assert.equal(await jsonpath(p.kubeconfig, ["joinrequest", jr], "{.status.certificate}"), "");
    // The agent, polling with its key, sees no certificate.
    const ts = Date.now();
    const poll = await client.request<PollResponse>("GET", `/v1/enroll/requests/${jr}`, undefined, { "x-fabric-timestamp": String(ts), "x-fabric-signature": signPoll(jr, ts, key.privateKey) });
    assert.equal(poll.body.state, "Pending");
    assert.equal(poll.body.certificate, undefined);

    // Renewal is an issuance: refused with 503 NotLeader, the old identity stays active.
    const stateDir = id.dir.replace(/\/clusters\/fenced$/, "");
    await assert.rejects(renewIdentity(stateDir, id), (e: unknown) => e instanceof AgentApiRequestError && e.status === 503 && e.code === "NotLeader");
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM node_identities WHERE node = 'fenced.before'"), 1);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM node_identities WHERE serial = $1 AND status = 'active'", [id.info.serial]), 1);

    // Revocation is a decision too: the deposed instance does not apply it.
    const refusedBeforeRevoke = await refusedReconciles("fabricnode");
    const rv = await kubectl(p.kubeconfig, ["patch", "fabricnode", "fenced.before", "--type", "merge", "-p", '{"spec":{"membership":"Revoked"}}']);
    assert.equal(rv.code, 0, rv.stderr);
    await eventually(async () => (await refusedReconciles("fabricnode")) > refusedBeforeRevoke, 30_000);
    assert.equal(await count(p.cp.db.pool, "SELECT count(*) AS n FROM nodes WHERE name = 'fenced.before' AND membership = 'Active'"), 1);
    const mtls = new AgentApiClient(p.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
    try {
      assert.equal((await mtls.request<{ membership: string }>("GET", "/v1/identity")).body.membership, "Active");
    } finally {
      mtls.close();
    }

    // No decision of the deposed instance reached the audit log.
    const after = await p.cp.db.pool.query<{ action: string; term: string }>("SELECT action, term FROM audit_events ORDER BY id OFFSET $1", [auditBefore]);
    assert.deepEqual(after.rows, [], JSON.stringify(after.rows));
  });
});
