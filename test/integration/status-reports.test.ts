/**
 * Generic status reports (POST /v1/status/:kind, agentapi/node-routes.ts)
 * against a real control plane (embedded PostgreSQL, API server,
 * controllers, agent API) with nodes enrolled through the real join flow,
 * posting over mTLS with their own certificates: a report lands in
 * PostgreSQL (node_status_reports) under the certificate's node, a version
 * not above the stored one changes nothing, one node's certificate can only
 * ever write its own rows (nothing in the request names a node; a
 * certificate for that node from another CA is refused), malformed requests
 * get a clean 4xx and change nothing, a revoked node can no longer write.
 */
import assert from "node:assert/strict";
import { createPrivateKey, createPublicKey } from "node:crypto";
import https from "node:https";
import { rmSync } from "node:fs";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { AgentApiRequestError } from "../../agent/http/client.js";
import { SyncTransport } from "../../agent/sync/transport.js";
import { createCertificateAuthority, randomSerial } from "../../lib/crypto/pki.js";
import { createCsr, issueNodeCertificate, parseCsr } from "../../lib/crypto/x509.js";
import { eventually, kubectl, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

interface Answer {
  status: number;
  body: { stored?: boolean; error?: { code?: string; message?: string } };
}

describe("status reports: POST /v1/status/:kind over mTLS into PostgreSQL", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  const ids: StoredIdentity[] = [];
  const dirs: string[] = [];
  const transports: SyncTransport[] = [];

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "sr", "TokenAutoApprove");
    const token = await createToken(p.kubeconfig, "sr-join", { cluster: "sr", maxUses: 10, autoApprove: true });
    for (const n of ["a", "b"]) {
      const dir = tempStateDir("fabric-agent-");
      dirs.push(dir);
      ids.push(await join({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: n, cluster: "sr", pollIntervalMs: 200, timeoutMs: 60_000 }));
    }
    for (const id of ids) transports.push(new SyncTransport(id));
  });
  after(async () => {
    for (const t of transports) t.close();
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const idOf = (i: number): StoredIdentity => {
    const id = ids[i];
    assert.ok(id !== undefined);
    return id;
  };
  const transportOf = (i: number): SyncTransport => {
    const t = transports[i];
    assert.ok(t !== undefined);
    return t;
  };
  /** The stored rows of a kind, by node. */
  const rows = async (kind: string): Promise<Record<string, { cluster: string; version: number; body: unknown }>> => {
    const r = await p.cp.db.pool.query<{ node: string; cluster: string; version: string; body: unknown }>("SELECT node, cluster, version, body FROM node_status_reports WHERE kind = $1 ORDER BY node", [kind]);
    return Object.fromEntries(r.rows.map((x) => [x.node, { cluster: x.cluster, version: Number(x.version), body: x.body }]));
  };
  /** A raw POST with the given client credentials (none: no client certificate). */
  const raw = (path: string, payload: string | Buffer, creds?: { certPem: string; keyPem: string }): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        new URL(path, p.server),
        { method: "POST", agent: false, ca: idOf(0).serverCaPem, ...(creds !== undefined ? { cert: creds.certPem, key: creds.keyPem } : {}), headers: { "Content-Type": "application/json" } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let body: Answer["body"] = {};
            try {
              body = JSON.parse(text) as Answer["body"];
            } catch {
              // not JSON: asserted by the caller through body being empty
            }
            resolve({ status: res.statusCode ?? 0, body });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  const post = (i: number, kind: string, report: unknown, query = ""): Promise<Answer> => raw(`/v1/status/${kind}${query}`, JSON.stringify(report), idOf(i));

  it("stores a node's report under its certificate's node; an older or equal version does not overwrite a newer one", async () => {
    // Through the agent's own transport, as the workload reporter sends.
    assert.deepEqual(await transportOf(0).postJson("/v1/status/vpn", { version: 5, body: { tunnels: 2, peers: ["x"] } }), { stored: true });
    assert.deepEqual(await rows("vpn"), { "sr.a": { cluster: "sr", version: 5, body: { tunnels: 2, peers: ["x"] } } });

    // Older and equal versions: answered, ignored.
    assert.deepEqual(await post(0, "vpn", { version: 3, body: { tunnels: 0 } }), { status: 202, body: { stored: false } });
    assert.deepEqual(await post(0, "vpn", { version: 5, body: { tunnels: 9 } }), { status: 202, body: { stored: false } });
    assert.deepEqual((await rows("vpn"))["sr.a"], { cluster: "sr", version: 5, body: { tunnels: 2, peers: ["x"] } });

    // A newer one replaces it; the received time moves with it.
    const before = await p.cp.db.pool.query<{ at: Date }>("SELECT received_at AS at FROM node_status_reports WHERE node = 'sr.a' AND kind = 'vpn'");
    assert.deepEqual(await post(0, "vpn", { version: 6, body: { tunnels: 3 } }), { status: 202, body: { stored: true } });
    assert.deepEqual((await rows("vpn"))["sr.a"], { cluster: "sr", version: 6, body: { tunnels: 3 } });
    const after = await p.cp.db.pool.query<{ at: Date }>("SELECT received_at AS at FROM node_status_reports WHERE node = 'sr.a' AND kind = 'vpn'");
    assert.ok((after.rows[0]?.at.getTime() ?? 0) >= (before.rows[0]?.at.getTime() ?? Infinity));

    // Kinds are independent: a low version of another kind is stored.
    assert.deepEqual(await post(0, "updates", { version: 1, body: { channel: "stable" } }), { status: 202, body: { stored: true } });
    assert.deepEqual(await rows("updates"), { "sr.a": { cluster: "sr", version: 1, body: { channel: "stable" } } });
    // Versions as large as the agent's (milliseconds since the epoch) and up to 2^53 - 1 are kept exactly.
    assert.deepEqual(await post(0, "updates", { version: Number.MAX_SAFE_INTEGER, body: {} }), { status: 202, body: { stored: true } });
    assert.equal((await rows("updates"))["sr.a"]?.version, Number.MAX_SAFE_INTEGER);
  });

  it("lets one node's certificate write only its own rows; a certificate for the node from another CA is refused", async () => {
    const a = (await rows("vpn"))["sr.a"];
    assert.ok(a !== undefined);
    // Node b naming node a in the query is refused outright, nothing written.
    const named = await post(1, "vpn", { version: 1000, body: { tunnels: 0 } }, "?node=sr.a");
    assert.equal(named.status, 403);
    assert.equal(named.body.error?.code, "Forbidden");
    assert.deepEqual(await rows("vpn"), { "sr.a": a });
    // The same for heartbeats (refused before the body is read).
    const hb = (await raw("/v1/heartbeat?node=sr.a", "{}", idOf(1))) as Answer;
    assert.equal(hb.status, 403);
    assert.equal(hb.body.error?.code, "Forbidden");
    // Naming node a in the body changes nothing: the report lands in b's own row.
    assert.deepEqual(await post(1, "vpn", { version: 1000, body: { tunnels: 0 }, node: "sr.a" }), { status: 202, body: { stored: true } });
    assert.deepEqual(await rows("vpn"), { "sr.a": a, "sr.b": { cluster: "sr", version: 1000, body: { tunnels: 0 } } });

    // A certificate naming sr.a with node a's own key, signed by a CA other than the cluster's: refused, nothing written.
    const rogue = createCertificateAuthority("rogue ca");
    const key = createPrivateKey(idOf(0).keyPem);
    const spkiDer = parseCsr(createCsr(key, createPublicKey(key), "sr.a")).spkiDer;
    const forged = issueNodeCertificate({ caCertPem: rogue.certPem, caKey: createPrivateKey(rogue.keyPem), spkiDer, cluster: "sr", node: "sr.a", serialHex: randomSerial(), notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86_400_000) });
    const refused = await raw("/v1/status/vpn", JSON.stringify({ version: 2000, body: { forged: true } }), { certPem: forged, keyPem: idOf(0).keyPem });
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error?.code, "CertificateRejected");
    assert.match(refused.body.error?.message ?? "", /not signed by the cluster CA/);
    // No client certificate at all.
    const anonymous = await raw("/v1/status/vpn", JSON.stringify({ version: 2000, body: { anonymous: true } }));
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.body.error?.code, "ClientCertificateRequired");
    assert.deepEqual((await rows("vpn"))["sr.a"], a);
  });

  it("answers malformed requests with a clean 4xx naming the problem, and stores nothing", async () => {
    const stored = await p.cp.db.pool.query("SELECT node, kind, version, body FROM node_status_reports ORDER BY node, kind");
    const cases: Array<[string, string, string | Buffer, number, RegExp]> = [
      ["a body that is not JSON", "vpn", "{version: 7", 400, /not JSON/],
      ["an array", "vpn", "[]", 400, /JSON object/],
      ["no version", "vpn", JSON.stringify({ body: {} }), 400, /version/],
      ["a negative version", "vpn", JSON.stringify({ version: -1, body: {} }), 400, /version/],
      ["a fractional version", "vpn", JSON.stringify({ version: 7.5, body: {} }), 400, /version/],
      ["a version as a string", "vpn", JSON.stringify({ version: "7", body: {} }), 400, /version/],
      ["a version above 2^53 - 1", "vpn", JSON.stringify({ version: 2 ** 53, body: {} }), 400, /version/],
      ["no body", "vpn", JSON.stringify({ version: 7 }), 400, /body/],
      ["a body that is a list", "vpn", JSON.stringify({ version: 7, body: [] }), 400, /body/],
      ["a body that is a string", "vpn", JSON.stringify({ version: 7, body: "up" }), 400, /body/],
      ["an upper-case kind", "VPN", JSON.stringify({ version: 7, body: {} }), 400, /kind/],
      ["a kind with an underscore", "vpn_state", JSON.stringify({ version: 7, body: {} }), 400, /kind/],
      ["a kind of 64 characters", "v".repeat(64), JSON.stringify({ version: 7, body: {} }), 400, /kind/],
      ["a report over 256 KiB", "vpn", JSON.stringify({ version: 7, body: { pad: "x".repeat(300 * 1024) } }), 413, /larger/],
    ];
    for (const [label, kind, payload, status, message] of cases) {
      const r = await raw(`/v1/status/${kind}`, payload, idOf(0));
      assert.equal(r.status, status, `${label}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error?.code, status === 413 ? "TooLarge" : "InvalidRequest", label);
      assert.match(r.body.error?.message ?? "", message, label);
    }
    // The agent's transport surfaces the same as an AgentApiRequestError.
    await assert.rejects(transportOf(0).postJson("/v1/status/vpn", { version: 8 }), (e: unknown) => e instanceof AgentApiRequestError && e.status === 400 && e.code === "InvalidRequest");
    assert.deepEqual((await p.cp.db.pool.query("SELECT node, kind, version, body FROM node_status_reports ORDER BY node, kind")).rows, stored.rows);
  });

  it("refuses a revoked node's reports and keeps its last one", async () => {
    const last = (await rows("vpn"))["sr.a"];
    const r = await kubectl(p.kubeconfig, ["patch", "fabricnode", "sr.a", "--type", "merge", "-p", '{"spec":{"membership":"Revoked"}}']);
    assert.equal(r.code, 0, r.stderr);
    // Until the revocation takes effect a stale version is answered (and ignored); then refused.
    const refused = await eventually(async () => {
      const x = await post(0, "vpn", { version: 0, body: { revoked: true } });
      return x.status === 202 ? undefined : x;
    }, 30_000, 100);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error?.code, "IdentityRevoked");
    const newer = await post(0, "vpn", { version: Date.now(), body: { revoked: true } });
    assert.equal(newer.status, 403);
    assert.equal(newer.body.error?.code, "IdentityRevoked");
    assert.deepEqual((await rows("vpn"))["sr.a"], last);
    // Node b is unaffected.
    assert.deepEqual(await post(1, "vpn", { version: 1001, body: { tunnels: 1 } }), { status: 202, body: { stored: true } });
  });
});
