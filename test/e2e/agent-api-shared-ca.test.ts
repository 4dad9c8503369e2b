/**
 * The agent API CA is one per database (agent_api_ca, migrations/013):
 * two control-plane processes on one external PostgreSQL present serving
 * certificates of their own that chain to the same CA (same --ca-hash), so
 * a node enrolled through one authenticates to the other's agent API with its
 * node certificate. A process with another KEK refuses to start. An install
 * from before the shared CA keeps the CA in its state directory (agents
 * pinned it): it is imported on first start, and a second process on the
 * same database then serves from it too. Concurrent first starts store one CA.
 */
import assert from "node:assert/strict";
import { randomBytes, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import type pg from "pg";
import { AgentApiClient } from "../../agent/http/client.js";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { fetchPinnedCa, join as joinCluster } from "../../agent/enroll/join.js";
import { loadAgentApiCredentials } from "../../agentapi/server.js";
import { kekFromBase64 } from "../../lib/crypto/kek.js";
import { createCertificateAuthority, issueServingCertificate } from "../../lib/crypto/pki.js";
import { caPinOf } from "../../lib/crypto/x509.js";
import { openDatabase } from "../../lib/db/database.js";
import { startEmbeddedPostgres, type EmbeddedDatabase } from "../../lib/db/embedded-postgres.js";
import { createPool } from "../../lib/db/pool.js";
import { logger, type Logger } from "../../lib/log.js";
import { spawnControlPlane, tempStateDir, type ChildControlPlane } from "../support/controlplane.js";
import { applyCluster, createToken } from "../support/enrollment.js";
import { seedPostgres } from "../support/pg-template.js";

/** The agent API URL and CA hash of a control plane's ready line. */
function agentApiOf(cp: ChildControlPlane): { url: string; caHash: string } {
  for (const line of cp.output().split("\n")) {
    if (!line.includes('"control plane ready"')) continue;
    const r = JSON.parse(line) as { agentApi?: unknown; agentApiCaHash?: unknown };
    if (typeof r.agentApi === "string" && typeof r.agentApiCaHash === "string") return { url: r.agentApi, caHash: r.agentApiCaHash };
  }
  throw new Error("no agent api in the ready line");
}

/** The serving certificate an endpoint presents, verified against `caPem` (the connection fails otherwise). */
function servingCertOf(url: string, caPem: string): Promise<X509Certificate> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: u.hostname, port: Number(u.port), ca: caPem, servername: u.hostname === "127.0.0.1" ? undefined : u.hostname }, () => {
      const raw = sock.getPeerCertificate().raw;
      sock.destroy();
      resolve(new X509Certificate(raw));
    });
    sock.once("error", reject);
  });
}

async function stopAll(procs: Iterable<ChildControlPlane>): Promise<void> {
  for (const p of procs) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGTERM");
    await p.exited;
  }
}

describe("agent API CA shared by the control planes of one database", function () {
  this.timeout(300_000);
  let pgDir: string;
  let db: EmbeddedDatabase;
  let pool: pg.Pool;
  const dirs: string[] = [];
  const procs: ChildControlPlane[] = [];
  const kekB64 = randomBytes(32).toString("base64");

  const newDir = (prefix?: string): string => {
    const d = tempStateDir(prefix);
    dirs.push(d);
    return d;
  };
  const spawnOn = async (url: string, dir: string, id: string, kek = kekB64): Promise<ChildControlPlane> => {
    const cp = await spawnControlPlane(dir, ["--identity", id], { FABRIC_KEK: kek, DATABASE_URL: url });
    procs.push(cp);
    return cp;
  };
  /** A fresh database on the shared embedded server. */
  const newDatabase = async (name: string): Promise<string> => {
    await pool.query(`CREATE DATABASE ${name}`);
    const u = new URL(db.url);
    u.pathname = `/${name}`;
    return u.toString();
  };

  before(async () => {
    pgDir = tempStateDir("fabric-pg-");
    await seedPostgres(join(pgDir, "postgres"));
    db = await startEmbeddedPostgres({ dataDir: join(pgDir, "postgres"), fsync: false });
    pool = createPool(db.url, { max: 4 });
  });
  after(async () => {
    await stopAll(procs);
    await pool?.end();
    await db?.stop();
    for (const d of [...dirs, pgDir]) rmSync(d, { recursive: true, force: true });
  });

  it("serves both agent APIs from one CA; a node enrolled through one authenticates to the other", async () => {
    const url = await newDatabase("shared_ca");
    const a = await spawnOn(url, newDir(), "cp-a");
    const b = await spawnOn(url, newDir(), "cp-b");
    const apiA = agentApiOf(a);
    const apiB = agentApiOf(b);
    assert.notEqual(apiA.url, apiB.url);
    assert.equal(apiA.caHash, apiB.caHash, "both processes announce the same CA hash");

    // Discovery as an agent does it: each endpoint's CA is fetched and checked against the one pin.
    const caFromA = await fetchPinnedCa(apiA.url, apiA.caHash);
    const caFromB = await fetchPinnedCa(apiB.url, apiA.caHash);
    assert.equal(caFromA, caFromB);
    const ca = new X509Certificate(caFromA);
    assert.equal(ca.publicKey.asymmetricKeyType, "ec", "a new CA is ECDSA P-256");
    // Each process has its own serving certificate, both issued by that CA (the TLS handshakes verify the chain).
    const servA = await servingCertOf(apiA.url, caFromA);
    const servB = await servingCertOf(apiB.url, caFromA);
    assert.notEqual(servA.fingerprint256, servB.fingerprint256);
    for (const s of [servA, servB]) assert.ok(s.checkIssued(ca) && s.verify(ca.publicKey));

    // One row; the key is sealed, never stored in the clear.
    const rows = createPool(url, { max: 1 });
    try {
      const r = await rows.query<{ ca_hash: string; origin: string; ciphertext: Buffer; kek_id: string }>("SELECT ca_hash, origin, ciphertext, kek_id FROM agent_api_ca");
      assert.equal(r.rows.length, 1);
      assert.equal(r.rows[0]?.ca_hash, apiA.caHash);
      assert.equal(r.rows[0]?.origin, "generated");
      assert.equal(r.rows[0]?.kek_id, kekFromBase64(kekB64).id);
      assert.ok(!(r.rows[0]?.ciphertext.toString("latin1").includes("PRIVATE KEY") ?? true));

      // Enroll through A (auto-approve), then use the node certificate against B.
      await applyCluster(a.kubeconfig, "ha", "TokenAutoApprove");
      const token = await createToken(a.kubeconfig, "ha-join", { cluster: "ha", maxUses: 2, autoApprove: true });
      const agentDir = newDir("fabric-agent-");
      const id: StoredIdentity = await joinCluster({ server: apiA.url, token, caHash: apiA.caHash, stateDir: agentDir, nodeName: "n1", cluster: "ha", pollIntervalMs: 200, timeoutMs: 60_000 });
      const toB = new AgentApiClient(apiB.url, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem });
      try {
        const ident = await toB.request<{ cluster: string; node: string; membership: string }>("GET", "/v1/identity");
        assert.equal(ident.status, 200);
        assert.deepEqual([ident.body.cluster, ident.body.node, ident.body.membership], ["ha", "ha.n1", "Active"]);
        const hb = await toB.request<{ intervalSeconds: number }>("POST", "/v1/heartbeat", { seq: 1, agentVersion: "test", capabilities: [], facts: {}, health: { status: "Healthy" } });
        assert.equal(hb.status, 202);
        const deadline = Date.now() + 20_000;
        for (;;) {
          const h = await rows.query<{ seq: string }>("SELECT seq FROM node_heartbeats WHERE node = 'ha.n1'");
          if (h.rows[0] !== undefined) break;
          assert.ok(Date.now() < deadline, "the heartbeat sent to B never reached PostgreSQL");
          await new Promise((r) => setTimeout(r, 100));
        }
        // The node's snapshot, long-polled from B with the same certificate.
        const snap = await toB.request<{ header?: unknown }>("GET", "/v1/snapshot?after=0&wait=20");
        assert.equal(snap.status, 200);
      } finally {
        toB.close();
      }
    } finally {
      await rows.end();
    }

    // A process with another KEK cannot open the CA and refuses to start.
    const other = spawnOn(url, newDir(), "cp-c", randomBytes(32).toString("base64"));
    await assert.rejects(other, /same KEK/);
  });

  it("imports the CA an existing install holds on disk, and a second process on the database serves from it", async () => {
    const url = await newDatabase("upgrade_ca");
    // The state directory as versions before the shared CA left it: an RSA CA made with node-forge and its serving certificate.
    const dirA = newDir();
    const pki = join(dirA, "pki", "agentapi");
    mkdirSync(pki, { recursive: true });
    const old = createCertificateAuthority("access-fabric-agent-api-ca");
    const oldServing = issueServingCertificate(old, "access-fabric-agent-api", ["localhost", "fabric-agent-api"], ["127.0.0.1", "::1"]);
    writeFileSync(join(pki, "ca.crt"), old.certPem);
    writeFileSync(join(pki, "ca.key"), old.keyPem, { mode: 0o600 });
    writeFileSync(join(pki, "serving.crt"), oldServing.certPem);
    writeFileSync(join(pki, "serving.key"), oldServing.keyPem, { mode: 0o600 });
    const pinned = caPinOf(old.certPem);

    let a = await spawnOn(url, dirA, "cp-a");
    assert.equal(agentApiOf(a).caHash, pinned, "the on-disk CA is kept");
    assert.equal(await fetchPinnedCa(agentApiOf(a).url, pinned), old.certPem);
    // Its serving certificate still chains to that CA: kept as it was.
    assert.equal(readFileSync(join(pki, "serving.crt"), "utf8"), oldServing.certPem);
    const rows = createPool(url, { max: 1 });
    try {
      const r = await rows.query<{ ca_hash: string; origin: string; cert_pem: string }>("SELECT ca_hash, origin, cert_pem FROM agent_api_ca");
      assert.deepEqual(r.rows, [{ ca_hash: pinned, origin: "imported", cert_pem: old.certPem }]);
    } finally {
      await rows.end();
    }

    // A second process with an empty state directory serves from the imported CA (its own certificate).
    const b = await spawnOn(url, newDir(), "cp-b");
    assert.equal(agentApiOf(b).caHash, pinned);
    const servB = await servingCertOf(agentApiOf(b).url, old.certPem);
    assert.equal(servB.publicKey.asymmetricKeyType, "ec");
    assert.ok(servB.checkIssued(new X509Certificate(old.certPem)));

    // A restart keeps everything.
    a.child.kill("SIGTERM");
    assert.equal(await a.exited, 0);
    a = await spawnOn(url, dirA, "cp-a");
    assert.equal(agentApiOf(a).caHash, pinned);
    await stopAll([a, b]);
  });

  it("stores one CA when first starts race, and ignores a different on-disk CA once the database has one", async () => {
    const url = await newDatabase("race_ca");
    const database = await openDatabase({ stateDir: "/nonexistent", databaseUrl: url, log: logger("test-db") });
    try {
      const kek = kekFromBase64(kekB64);
      // Records warnings instead of printing them.
      const warnings: string[] = [];
      const log: Logger = { debug: () => undefined, info: () => undefined, warn: (m) => warnings.push(m), error: (m) => warnings.push(m), with: () => log };
      const raceDirs = [0, 1, 2, 3].map(() => join(newDir(), "pki", "agentapi"));
      // One of them holds an on-disk CA of its own: whichever insert wins, all end up with the same CA.
      mkdirSync(raceDirs[3] ?? "", { recursive: true });
      const own = createCertificateAuthority("access-fabric-agent-api-ca");
      writeFileSync(join(raceDirs[3] ?? "", "ca.crt"), own.certPem);
      writeFileSync(join(raceDirs[3] ?? "", "ca.key"), own.keyPem);
      const creds = await Promise.all(raceDirs.map((dir, i) => loadAgentApiCredentials({ dir, names: [], pool: database.pool, kek, actor: `race-${i}`, log })));
      const hashes = new Set(creds.map((c) => caPinOf(c.ca.certPem)));
      assert.equal(hashes.size, 1);
      const r = await database.pool.query<{ ca_hash: string }>("SELECT ca_hash FROM agent_api_ca");
      assert.deepEqual(r.rows.map((x) => x.ca_hash), [...hashes]);
      for (const c of creds) {
        const s = new X509Certificate(c.serving.certPem);
        assert.ok(s.checkIssued(new X509Certificate(c.ca.certPem)));
      }
      // The process with its own on-disk CA: its serving certificate was issued by the shared CA, whichever won.
      const again = await loadAgentApiCredentials({ dir: raceDirs[3] ?? "", names: ["agents.example", "10.0.0.7"], pool: database.pool, kek, actor: "again", log });
      assert.equal(caPinOf(again.ca.certPem), [...hashes][0]);
      const s = new X509Certificate(again.serving.certPem);
      assert.ok(s.checkHost("agents.example") !== undefined && s.checkIP("10.0.0.7") !== undefined, "a new name re-issues the serving certificate");
      assert.equal(readFileSync(join(raceDirs[3] ?? "", "serving.crt"), "utf8"), again.serving.certPem);
      // Its own CA is reported as ignored unless it is the one that won.
      const ownWon = hashes.has(caPinOf(own.certPem));
      assert.equal(warnings.filter((w) => w.includes("is not the database's")).length, ownWon ? 0 : 2);
    } finally {
      await database.close();
    }
  });
});
