/**
 * Hostile request bodies against every agent API route that reads one
 * (enrollment, heartbeat, status report, renewal), over the real HTTPS
 * server with real node certificates, against a real control plane
 * (embedded PostgreSQL, API server, controllers): bodies that are not UTF-8
 * JSON, oversized, nested thousands deep, holding strings PostgreSQL's jsonb
 * cannot store, or with fields of the wrong type are refused with a 4xx JSON
 * problem naming the problem (never a 500), and change nothing: no join
 * request, no token use, no heartbeat, no status report, no new
 * certificate. A hostile heartbeat never costs another node its heartbeat.
 * Also the enrollment poll's proof of possession (stale, foreign key,
 * replayed for another request) and renewal with a CSR naming another node.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import https from "node:https";
import { rmSync } from "node:fs";
import { generateNodeKey, type StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { POP_SIGNATURE_HEADER, POP_TIMESTAMP_HEADER, signPoll } from "../../lib/enrollment/protocol.js";
import { claimedNode, createCsr } from "../../lib/crypto/x509.js";
import { eventually, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, enrollOnce, pinnedClient, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

interface Answer {
  status: number;
  contentType: string;
  body: { error?: { code?: string; message?: string }; [k: string]: unknown };
}

type Case = [label: string, payload: string | Buffer, status: number, code: string, message: RegExp];

const nestedArrays = (n: number): string => "[".repeat(n) + "]".repeat(n);
const nestedObjects = (n: number): string => '{"k":'.repeat(n) + "1" + "}".repeat(n);

describe("agent API: hostile request bodies get a clean 4xx and change nothing", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  let token = "";
  let manualToken = "";
  const ids: StoredIdentity[] = [];
  const dirs: string[] = [];

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, "hb", "TokenAutoApprove");
    await applyCluster(p.kubeconfig, "manual");
    token = await createToken(p.kubeconfig, "hb-join", { cluster: "hb", maxUses: 10, autoApprove: true });
    manualToken = await createToken(p.kubeconfig, "manual-join", { cluster: "manual", maxUses: 10 });
    for (const n of ["a", "b", "c"]) {
      const dir = tempStateDir("fabric-agent-");
      dirs.push(dir);
      ids.push(await join({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: n, cluster: "hb", pollIntervalMs: 200, timeoutMs: 60_000 }));
    }
  });
  after(async () => {
    await p?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const idOf = (i: number): StoredIdentity => {
    const id = ids[i];
    assert.ok(id !== undefined);
    return id;
  };
  const count = async (sql: string, args: unknown[] = []): Promise<number> => Number((await p.cp.db.pool.query<{ n: string }>(sql, args)).rows[0]?.n ?? -1);

  /** A raw request with the given client credentials (none: no client certificate). */
  const raw = (method: string, path: string, payload: string | Buffer | undefined, creds?: StoredIdentity, headers: Record<string, string> = {}): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        new URL(path, p.server),
        { method, agent: false, ca: idOf(0).serverCaPem, ...(creds !== undefined ? { cert: creds.certPem, key: creds.keyPem } : {}), headers: { "Content-Type": "application/json", ...headers } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            let body: Answer["body"] = {};
            try {
              body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Answer["body"];
            } catch {
              // not JSON: the caller's assertions on body.error fail
            }
            resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body });
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });

  async function expectRefusals(method: string, path: string, cases: Case[], creds?: StoredIdentity): Promise<void> {
    for (const [label, payload, status, code, message] of cases) {
      const r = await raw(method, path, payload, creds);
      assert.equal(r.status, status, `${label}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      assert.match(r.contentType, /application\/json/, label);
      assert.equal(r.body.error?.code, code, label);
      assert.match(r.body.error?.message ?? "", message, label);
    }
  }

  /** The refusals every body-reading route shares; `wrap` puts a hostile value where the route stores JSON. */
  const common = (wrap: (inner: string) => string): Case[] => [
    ["a body that is not JSON", "{version: 7", 400, "InvalidRequest", /not JSON/],
    ["an empty body", "", 400, "InvalidRequest", /not JSON/],
    ["a body that is not UTF-8", Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 400, "InvalidRequest", /not UTF-8/],
    ["a body that is a 10,000-deep array (20 KB)", nestedArrays(10_000), 400, "InvalidRequest", /nested deeper than 64 levels/],
    ["a 10,000-deep array where JSON is stored", wrap(nestedArrays(10_000)), 400, "InvalidRequest", /nested deeper than 64 levels/],
    ["a 10,000-deep object where JSON is stored", wrap(nestedObjects(10_000)), 400, "InvalidRequest", /nested deeper than 64 levels/],
    ["a value one level over the limit (65 deep with the body) where JSON is stored", wrap(nestedArrays(64)), 400, "InvalidRequest", /nested deeper than 64 levels/],
    ["an escaped U+0000 where JSON is stored", wrap('{"note":"a\\u0000b"}'), 400, "InvalidRequest", /U\+0000/],
    ["an escaped lone surrogate in a value where JSON is stored", wrap('{"note":"\\ud800"}'), 400, "InvalidRequest", /lone UTF-16 surrogate/],
    ["an escaped lone surrogate in a member name where JSON is stored", wrap('{"\\udc00":1}'), 400, "InvalidRequest", /lone UTF-16 surrogate/],
    ["JSON null", "null", 400, "InvalidRequest", /JSON object|required|csr/],
  ];

  it("POST /v1/enroll: refuses hostile and ill-typed bodies; no join request, no token use", async () => {
    const key = generateNodeKey();
    const base = { token, nodeName: "hostile", hostFingerprint: `sha256:${"ab".repeat(32)}`, csr: createCsr(key.privateKey, key.publicKey, "hostile"), capabilities: [], requestedRoles: [], facts: { hostname: "h" } };
    const body = (o: Record<string, unknown>): string => JSON.stringify({ ...base, ...o });
    const mesh = { endpoints: [{ address: "10.0.0.1", port: 4433 }], reachable: true, load: 0.2 };
    const withFacts = (inner: string): string => `${body({ facts: {} }).slice(0, -1)},"facts":${inner}}`;
    const requests = await count("SELECT count(*) AS n FROM join_requests");
    const used = await count("SELECT used AS n FROM join_tokens WHERE name = 'hb-join'");
    await expectRefusals("POST", "/v1/enroll", [
      ...common(withFacts),
      ["a body over 64 KiB", body({ facts: { pad: "x".repeat(70 * 1024) } }), 413, "TooLarge", /larger than 65536 bytes/],
      ["facts holding a deep array under the limit but over 16 KiB", body({ facts: { a: Array.from({ length: 5000 }, () => [1]) } }), 400, "InvalidRequest", /facts are larger/],
      ["a token that is a number", body({ token: 123 }), 400, "InvalidRequest", /token/],
      ["a node name that is a number", body({ nodeName: 5 }), 400, "InvalidRequest", /nodeName/],
      ["a node name that names another cluster's node", body({ nodeName: "manual.a" }), 400, "InvalidRequest", /nodeName/],
      ["a cluster that is a number", body({ cluster: 7 }), 400, "InvalidRequest", /cluster/],
      ["a fingerprint that is not sha256", body({ hostFingerprint: "sha1:abcd" }), 400, "InvalidRequest", /hostFingerprint/],
      ["a CSR that is a number", body({ csr: 1 }), 400, "InvalidRequest", /csr/],
      ["a CSR that is not one", body({ csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" }), 400, "CsrInvalid", /./],
      ["capabilities that are a string", body({ capabilities: "all" }), 400, "InvalidRequest", /capabilities/],
      ["requested roles holding a number", body({ requestedRoles: [1] }), 400, "InvalidRequest", /requestedRoles/],
      ["facts that are a list", body({ facts: [] }), 400, "InvalidRequest", /facts/],
      ["a body that is a list", JSON.stringify([base]), 400, "InvalidRequest", /JSON object/],
    ]);
    assert.equal(await count("SELECT count(*) AS n FROM join_requests"), requests, "no join request was created");
    assert.equal(await count("SELECT used AS n FROM join_tokens WHERE name = 'hb-join'"), used, "no token use was counted");
  });

  it("GET /v1/enroll/requests/:name: refuses a stale, a foreign and a replayed proof of possession", async () => {
    const client = await pinnedClient(p);
    try {
      const k1 = generateNodeKey();
      const k2 = generateNodeKey();
      const r1 = await enrollOnce(client, { token: manualToken, nodeName: "pop-1" }, k1);
      const r2 = await enrollOnce(client, { token: manualToken, nodeName: "pop-2" }, k2);
      assert.ok(r1.ok && r2.ok);
      const n1 = r1.body.joinRequest;
      const n2 = r2.body.joinRequest;
      const poll = (name: string, ts: number, sig: string): Promise<Answer> => raw("GET", `/v1/enroll/requests/${name}`, undefined, undefined, { [POP_TIMESTAMP_HEADER]: String(ts), [POP_SIGNATURE_HEADER]: sig });
      const now = Date.now();
      const cases: Array<[string, Promise<Answer>, number, string]> = [
        ["a genuine proof", poll(n1, now, signPoll(n1, now, k1.privateKey)), 200, ""],
        ["a proof ten minutes old", poll(n1, now - 600_000, signPoll(n1, now - 600_000, k1.privateKey)), 401, "ProofStale"],
        ["a proof ten minutes ahead", poll(n1, now + 600_000, signPoll(n1, now + 600_000, k1.privateKey)), 401, "ProofStale"],
        ["a proof by another request's key", poll(n1, now, signPoll(n1, now, k2.privateKey)), 401, "ProofInvalid"],
        ["a genuine proof for one request replayed for another", poll(n2, now, signPoll(n1, now, k1.privateKey)), 401, "ProofInvalid"],
        ["a proof with another timestamp than the signed one", poll(n1, now + 1, signPoll(n1, now, k1.privateKey)), 401, "ProofInvalid"],
        ["no proof", raw("GET", `/v1/enroll/requests/${n1}`, undefined), 401, "ProofRequired"],
      ];
      for (const [label, answer, status, code] of cases) {
        const r = await answer;
        assert.equal(r.status, status, `${label}: ${JSON.stringify(r.body)}`);
        if (code !== "") assert.equal(r.body.error?.code, code, label);
        else assert.equal(r.body.state, "Pending", label);
      }
    } finally {
      client.close();
    }
  });

  it("POST /v1/heartbeat: refuses hostile and ill-typed bodies; stores none, and another node's heartbeat still lands", async () => {
    const base = { seq: 1, agentVersion: "0.1.0", capabilities: [], facts: { os: "linux" }, health: { status: "Healthy" } };
    const body = (o: Record<string, unknown>): string => JSON.stringify({ ...base, ...o });
    const mesh = { endpoints: [{ address: "10.0.0.1", port: 4433 }], reachable: true, load: 0.2 };
    const withFacts = (inner: string): string => `${body({ facts: {} }).slice(0, -1)},"facts":${inner}}`;
    await expectRefusals(
      "POST",
      "/v1/heartbeat",
      [
        ...common(withFacts),
        ["a body over 64 KiB", body({ facts: { pad: "x".repeat(70 * 1024) } }), 413, "TooLarge", /larger than 65536 bytes/],
        ["an agent version with a lone surrogate", body({ agentVersion: "1\ud800" }).replace("1\ud800", "1\\ud800"), 400, "InvalidRequest", /lone UTF-16 surrogate/],
        ["a seq that is a string", body({ seq: "1" }), 400, "InvalidRequest", /seq/],
        ["a negative seq", body({ seq: -1 }), 400, "InvalidRequest", /seq/],
        ["capabilities that are a string", body({ capabilities: "all" }), 400, "InvalidRequest", /capabilities/],
        ["facts that are a list", body({ facts: [1] }), 400, "InvalidRequest", /facts/],
        ["an unknown health status", body({ health: { status: "Sick" } }), 400, "InvalidRequest", /health/],
        ["a snapshot hash that is not sha256 hex", body({ snapshot: { serial: 1, hash: "zz", appliedAt: new Date().toISOString() } }), 400, "InvalidRequest", /snapshot/],
        ["a body that is a list", JSON.stringify([base]), 400, "InvalidRequest", /JSON object/],
        ["mesh that is a string", body({ mesh: "on" }), 400, "InvalidRequest", /mesh must be an object/],
        ["mesh endpoints that are not a list", body({ mesh: { ...mesh, endpoints: { address: "10.0.0.1", port: 1 } } }), 400, "InvalidRequest", /mesh.endpoints/],
        ["17 mesh endpoints", body({ mesh: { ...mesh, endpoints: Array.from({ length: 17 }, (_, i) => ({ address: `10.0.0.${i + 1}`, port: 4433 })) } }), 400, "InvalidRequest", /at most 16/],
        ["a mesh endpoint with a host name", body({ mesh: { ...mesh, endpoints: [{ address: "evil.example", port: 4433 }] } }), 400, "InvalidRequest", /address/],
        ["a mesh endpoint with an IPv6 zone", body({ mesh: { ...mesh, endpoints: [{ address: "fe80::1%eth0", port: 4433 }] } }), 400, "InvalidRequest", /address/],
        ["a mesh endpoint on the unspecified address", body({ mesh: { ...mesh, endpoints: [{ address: "0.0.0.0", port: 4433 }] } }), 400, "InvalidRequest", /address/],
        ["a mesh endpoint on a multicast address", body({ mesh: { ...mesh, endpoints: [{ address: "239.1.1.1", port: 4433 }] } }), 400, "InvalidRequest", /address/],
        ["a mesh port of 0", body({ mesh: { ...mesh, endpoints: [{ address: "10.0.0.1", port: 0 }] } }), 400, "InvalidRequest", /port/],
        ["a mesh port above 65535", body({ mesh: { ...mesh, endpoints: [{ address: "10.0.0.1", port: 65536 }] } }), 400, "InvalidRequest", /port/],
        ["a mesh port that is a string", body({ mesh: { ...mesh, endpoints: [{ address: "10.0.0.1", port: "4433" }] } }), 400, "InvalidRequest", /port/],
        ["a repeated mesh endpoint", body({ mesh: { ...mesh, endpoints: [{ address: "10.0.0.1", port: 1 }, { address: "10.0.0.1", port: 1 }] } }), 400, "InvalidRequest", /repeat/],
        ["a mesh reachable flag that is a string", body({ mesh: { ...mesh, reachable: "yes" } }), 400, "InvalidRequest", /reachable/],
        ["a mesh relayCapable that is a number", body({ mesh: { ...mesh, relayCapable: 1 } }), 400, "InvalidRequest", /relayCapable/],
        ["a mesh load above 1", body({ mesh: { ...mesh, load: 1.5 } }), 400, "InvalidRequest", /load/],
        ["a negative mesh load", body({ mesh: { ...mesh, load: -0.1 } }), 400, "InvalidRequest", /load/],
        ["a mesh load that is a string", body({ mesh: { ...mesh, load: "0.5" } }), 400, "InvalidRequest", /load/],
        ["an unknown mesh field", body({ mesh: { ...mesh, peers: [] } }), 400, "InvalidRequest", /not a known field/],
      ],
      idOf(0),
    );
    assert.equal(await count("SELECT count(*) AS n FROM mesh_endpoints WHERE node = 'hb.a'"), 0, "node a's hostile mesh reports stored nothing");
    // Node b's heartbeat, queued after all of that, is written (a hostile one never shares its batch).
    const good = await raw("POST", "/v1/heartbeat", body({ seq: 42, facts: { os: "linux", nested: { ok: [1, 2] } }, mesh: { ...mesh, endpoints: [{ address: "FD00::1", port: 4433 }, ...mesh.endpoints] } }), idOf(1));
    assert.equal(good.status, 202, JSON.stringify(good.body));
    await eventually(async () => (await count("SELECT seq AS n FROM node_heartbeats WHERE node = 'hb.b'")) === 42, 20_000, 100);
    await eventually(async () => (await count("SELECT count(*) AS n FROM mesh_endpoints WHERE node = 'hb.b' AND endpoints = ARRAY['[fd00::1]:4433', '10.0.0.1:4433']")) === 1, 20_000, 100);
    assert.equal(await count("SELECT count(*) AS n FROM node_heartbeats WHERE node = 'hb.a'"), 0, "node a's hostile heartbeats stored nothing");
  });

  it("POST /v1/status/:kind: refuses hostile bodies with 400, never 500; stores nothing", async () => {
    const withBody = (inner: string): string => `{"version":7,"body":${inner}}`;
    await expectRefusals("POST", "/v1/status/vpn", [...common(withBody), ["a version that is a string", withBody("{}").replace("7", '"7"'), 400, "InvalidRequest", /version/]], idOf(0));
    assert.equal(await count("SELECT count(*) AS n FROM node_status_reports"), 0);
    // A report within the limits is stored (the limits refuse nothing an agent sends).
    const ok = await raw("POST", "/v1/status/vpn", withBody(`{"tunnels":[{"peer":"b","routes":${nestedArrays(10)}}],"note":"[[[{{{"}`), idOf(0));
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    assert.equal(await count("SELECT count(*) AS n FROM node_status_reports WHERE node = 'hb.a'"), 1);
  });

  it("POST /v1/identity/renew: refuses hostile and ill-typed bodies without renewing; a CSR naming another node still renews only the caller", async () => {
    const c = idOf(2);
    const serialOf = async (): Promise<string> => {
      const r = await raw("GET", "/v1/identity", undefined, c);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return String(r.body.serial);
    };
    const before = await serialOf();
    const key = generateNodeKey();
    const csr = createCsr(key.privateKey, key.publicKey, "hb.c");
    const withCsr = (inner: string): string => `{"csr":${JSON.stringify(csr)},"extra":${inner}}`;
    await expectRefusals(
      "POST",
      "/v1/identity/renew",
      [
        ...common(withCsr),
        ["a body over 64 KiB", JSON.stringify({ csr, pad: "x".repeat(70 * 1024) }), 413, "TooLarge", /larger than 65536 bytes/],
        ["a CSR that is a number", JSON.stringify({ csr: 5 }), 400, "InvalidRequest", /csr/],
        ["a CSR that is not one", JSON.stringify({ csr: "junk" }), 400, "CsrInvalid", /./],
      ],
      c,
    );
    assert.equal(await serialOf(), before, "nothing was renewed");
    // The certificate is always for the authenticated node, whatever the CSR names.
    const other = generateNodeKey();
    const r = await raw("POST", "/v1/identity/renew", JSON.stringify({ csr: createCsr(other.privateKey, other.publicKey, "hb.a") }), c);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(claimedNode(new X509Certificate(String(r.body.certificate))), { cluster: "hb", node: "hb.c" });
  });
});
