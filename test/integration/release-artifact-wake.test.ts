/**
 * The Release controller wakes on an upload: a release waiting in
 * ArtifactMissing is verified right after its artifact is stored (the
 * artifacts insert notifies, controllers/release/artifact-listener.ts), well
 * before the periodic recheck (ARTIFACT_RECHECK_MS) could have done it; the
 * index and the audit record the authenticated identity that uploaded.
 * Garbage notifications on the channel are ignored.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import https from "node:https";
import { ARTIFACT_RECHECK_MS } from "../../controllers/release/plan.js";
import { ADMIN_USER } from "../../apiserver/server.js";
import { generateSigningKey, signRelease, spkiBase64, type ReleaseManifest } from "../../lib/release/index.js";
import { eventually, kubectl } from "../support/controlplane.js";
import { applyCluster, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";

const CLUSTER = "wake";

describe("release controller: woken by artifact uploads, uploader recorded", function () {
  this.timeout(180_000);
  let p: EnrollmentPlane;
  const key = generateSigningKey();

  const apply = async (obj: unknown): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify(obj) });
    assert.equal(r.code, 0, r.stderr);
  };
  const reason = async (name: string): Promise<string | undefined> => {
    const r = await kubectl(p.kubeconfig, ["get", "release", name, "-o", `jsonpath={.status.conditions[?(@.type=="Verified")].reason}`]);
    return r.code === 0 ? r.stdout : undefined;
  };
  const api = (method: string, path: string, body?: Buffer, auth = true): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const url = new URL(p.cp.api.url);
      const req = https.request(
        { host: url.hostname, port: url.port, method, path, rejectUnauthorized: false, agent: false, headers: { ...(auth ? { Authorization: `Bearer ${p.cp.api.adminToken}` } : {}), ...(body ? { "Content-Length": body.length } : {}) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });

  before(async () => {
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, CLUSTER, "TokenAutoApprove");
    await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: { threshold: 1, keys: [{ keyId: key.keyId, publicKey: spkiBase64(key.publicKey) }] } } });
  });
  after(async () => {
    await p?.stop();
  });

  it("verifies an ArtifactMissing release as soon as its artifact is pushed, and records who pushed it", async () => {
    // The recheck alone would take ARTIFACT_RECHECK_MS: the wait below ends well before it.
    assert.ok(ARTIFACT_RECHECK_MS >= 30_000, "the periodic recheck is slow enough for this test to tell the wake from it");
    const artifact = randomBytes(64 * 1024);
    const sha256 = createHash("sha256").update(artifact).digest("hex");
    const m: ReleaseManifest = { _type: "release", specVersion: 1, component: "rdp-worker", version: "1.0.0", expires: "2036-01-01T00:00:00Z", artifacts: [{ os: "linux", arch: "amd64", length: artifact.length, sha256 }] };
    await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "Release", metadata: { name: "woken" }, spec: { cluster: CLUSTER, component: "rdp-worker", version: "1.0.0", envelope: signRelease(m, [key]) } });
    await eventually(async () => (await reason("woken")) === "ArtifactMissing", 60_000, 200);

    // Garbage and unrelated notifications wake nothing and break nothing.
    for (const payload of ["", "not-a-digest", "f".repeat(64), "x".repeat(7000)]) await p.cp.db.pool.query("SELECT pg_notify('artifact_stored', $1)", [payload]);
    assert.equal((await api("PUT", `/artifacts/v1/${sha256}`, artifact, false)).status, 401, "an unauthenticated upload is refused");

    const missingSince = Date.now();
    const put = await api("PUT", `/artifacts/v1/${sha256}`, artifact);
    assert.equal(put.status, 201, put.body);
    await eventually(async () => (await reason("woken")) === "Verified", ARTIFACT_RECHECK_MS - 15_000 - (Date.now() - missingSince), 200);

    const row = await api("GET", `/artifacts/v1/${sha256}`);
    assert.equal(row.status, 200);
    assert.equal((JSON.parse(row.body) as { uploadedBy: string }).uploadedBy, ADMIN_USER);
    const audit = await p.cp.db.pool.query<{ actor: string }>("SELECT actor FROM audit_events WHERE action = 'artifact.stored' AND object_name = $1", [sha256]);
    assert.deepEqual(audit.rows, [{ actor: ADMIN_USER }]);
  });
});
