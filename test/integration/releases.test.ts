/**
 * Signed releases against a real control plane (embedded PostgreSQL, API
 * server, controllers, agent API) with the real kubectl and fabricctl:
 *
 * - Releases applied with kubectl end Verified or Rejected with the reason
 *   (unknown key, threshold, changed byte, expired, rollback, another
 *   component, spec copies that differ), and only verified ones are
 *   recorded as usable in PostgreSQL, with audit rows;
 * - a release waits as ArtifactMissing until `fabricctl release push`
 *   uploads its artifact, then verifies;
 * - the trust set: a change without a rotation signed by the accepted
 *   threshold is refused (the old set stays in force), a signed one is taken;
 * - hostile uploads (wrong hash, oversized, cut, chunked, path tricks,
 *   no credentials, concurrent same artifact) get a 4xx and store nothing;
 * - agents download over mTLS only what an assignment of a verified release
 *   names (403 otherwise, 404 when unknown), with Range resume through a cut
 *   connection, and refuse a corrupted or longer-than-signed body.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import tls from "node:tls";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join as joinCluster } from "../../agent/enroll/join.js";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import { fetchArtifact } from "../../agent/update/fetch.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { generateSigningKey, ReleaseError, signRelease, signTrustRotation, spkiBase64, type ReleaseManifest, type SigningKey, type TrustSet } from "../../lib/release/index.js";
import { eventually, kubectl, repoRoot, tempStateDir } from "../support/controlplane.js";
import { applyCluster, createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";
import { startTcpProxy } from "../support/tcp-proxy.js";

interface ReleaseObj {
  status?: { verified?: boolean; rejectionReason?: string; signedBy?: string[]; conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
}

const CLUSTER = "relc";
const keys = [generateSigningKey(), generateSigningKey(), generateSigningKey()];
const stranger = generateSigningKey();
const trustOf = (threshold: number, ks: SigningKey[] & Array<{ publicKey?: unknown }>): TrustSet => ({
  threshold,
  keys: (ks as Array<ReturnType<typeof generateSigningKey>>).map((k) => ({ keyId: k.keyId, publicKey: spkiBase64(k.publicKey) })),
});
const future = "2036-01-01T00:00:00Z";

function fabricctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(repoRoot, "bin", "fabricctl"), args, { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe("signed releases: verification, version store, artifact downloads", function () {
  this.timeout(300_000);
  let p: EnrollmentPlane;
  let work: string;
  const ids: StoredIdentity[] = [];
  const dirs: string[] = [];
  const clients: AgentApiClient[] = [];

  const apply = async (obj: unknown): Promise<void> => {
    const r = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify(obj) });
    assert.equal(r.code, 0, r.stderr);
  };
  const releaseObj = (name: string, manifest: Partial<ReleaseManifest>, signers: SigningKey[], spec: Record<string, unknown> = {}, tamper?: (payload: Buffer) => void) => {
    const m: ReleaseManifest = { _type: "release", specVersion: 1, component: "rdp-worker", version: "1.0.0", expires: future, artifacts: [{ os: "linux", arch: "amd64", length: 4, sha256: "c".repeat(64) }], ...manifest };
    const envelope = signRelease(m, signers);
    if (tamper) {
      const b = Buffer.from(envelope.payload, "base64");
      tamper(b);
      envelope.payload = b.toString("base64");
    }
    return { apiVersion: "accessfabric.io/v1alpha1", kind: "Release", metadata: { name }, spec: { cluster: CLUSTER, component: m.component, version: m.version, envelope, ...spec } };
  };
  const getRelease = async (name: string): Promise<ReleaseObj> =>
    (await p.api.getClusterCustomObject({ group: "accessfabric.io", version: "v1alpha1", plural: "releases", name })) as ReleaseObj;
  const verifiedCondition = async (name: string, reason: string) =>
    eventually(async () => {
      const c = (await getRelease(name)).status?.conditions?.find((x) => x.type === "Verified");
      return c?.reason === reason ? c : undefined;
    }, 60_000);
  const dbRelease = async (name: string) => (await p.cp.db.pool.query<{ verified: boolean; reason: string }>("SELECT verified, reason FROM releases WHERE name = $1", [name])).rows[0];
  /** A raw request to the API server with the admin token (or none). */
  const apiRaw = (method: string, path: string, o: { body?: Buffer; headers?: Record<string, string | number>; auth?: boolean; cutAfter?: Buffer } = {}): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const url = new URL(p.cp.api.url);
      const req = https.request(
        {
          host: url.hostname,
          port: url.port,
          method,
          path,
          rejectUnauthorized: false,
          agent: false,
          headers: { ...(o.auth === false ? {} : { Authorization: `Bearer ${p.cp.api.adminToken}` }), ...(o.body ? { "Content-Length": o.body.length } : {}), ...o.headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
          res.on("error", reject);
        },
      );
      req.on("error", (err) => (o.cutAfter ? resolve({ status: 0, body: String(err) }) : reject(err)));
      if (o.cutAfter) {
        req.write(o.cutAfter);
        setTimeout(() => req.destroy(), 200);
      } else req.end(o.body);
    });
  const storeDir = () => join(p.stateDir, "artifacts");
  const stored = async (sha: string) => ({
    row: (await p.cp.db.pool.query("SELECT 1 FROM artifacts WHERE sha256 = $1", [sha])).rowCount === 1,
    file: existsSync(join(storeDir(), "sha256", sha.slice(0, 2), sha)),
  });
  const tmpEmpty = () => readdirSync(join(storeDir(), "tmp")).length === 0;

  before(async () => {
    work = tempStateDir("afg-rel-");
    p = await startEnrollmentPlane();
    await applyCluster(p.kubeconfig, CLUSTER, "TokenAutoApprove");
    await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: trustOf(2, keys) } });
    const token = await createToken(p.kubeconfig, "relc-join", { cluster: CLUSTER, maxUses: 10, autoApprove: true });
    for (const n of ["a", "b"]) {
      const dir = tempStateDir("afg-agent-");
      dirs.push(dir);
      const id = await joinCluster({ server: p.server, token, caHash: p.caHash, stateDir: dir, nodeName: n, cluster: CLUSTER, pollIntervalMs: 200, timeoutMs: 60_000 });
      ids.push(id);
      clients.push(new AgentApiClient(p.server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem }));
    }
  });
  after(async () => {
    for (const c of clients) c.close();
    await p?.stop();
    for (const d of [...dirs, work]) if (d) rmSync(d, { recursive: true, force: true });
  });

  describe("verification of Releases applied with kubectl", () => {
    const cases: Array<[string, () => ReturnType<typeof releaseObj>, string]> = [
      ["signed by an unknown key", () => releaseObj("r-unknown", { version: "0.1.0" }, [stranger, { keyId: "x", privateKey: stranger.privateKey }]), "UnknownKey"],
      ["fewer signatures than the threshold", () => releaseObj("r-threshold", { version: "0.1.0" }, [keys[0]!, keys[0]!, stranger]), "ThresholdNotMet"],
      ["a changed byte in the payload", () => releaseObj("r-tampered", { version: "0.1.0" }, [keys[0]!, keys[1]!], {}, (b) => { b[b.indexOf("0.1.0")] = "9".charCodeAt(0); }), "BadSignature"],
      ["an expired manifest", () => releaseObj("r-expired", { version: "0.1.0", expires: "2020-01-01T00:00:00Z" }, [keys[0]!, keys[1]!]), "Expired"],
      ["another component's manifest under this component", () => ({ ...releaseObj("r-mix", { version: "0.1.0", component: "update-cache" }, [keys[0]!, keys[1]!]), spec: { ...releaseObj("r-mix", { version: "0.1.0", component: "update-cache" }, [keys[0]!, keys[1]!]).spec, component: "rdp-worker" } }), "MismatchedComponent"],
      ["a spec version that differs from the signed one", () => releaseObj("r-version", { version: "0.1.0" }, [keys[0]!, keys[1]!], { version: "0.2.0" }), "MismatchedVersion"],
    ];
    for (const [what, make, reason] of cases) {
      it(`rejects ${what} (${reason}) and records it as unusable`, async () => {
        const obj = make();
        await apply(obj);
        const c = await verifiedCondition(obj.metadata.name, reason);
        assert.equal(c.status, "False");
        const r = await getRelease(obj.metadata.name);
        assert.equal(r.status?.verified, false);
        assert.match(r.status?.rejectionReason ?? "", new RegExp(`^${reason}: `));
        assert.deepEqual(await dbRelease(obj.metadata.name), { verified: false, reason });
      });
    }

    it("keeps a well-signed release ArtifactMissing until fabricctl release push uploads it, then verifies it", async () => {
      const artifact = randomBytes(3 * 1024 * 1024 + 17);
      const file = join(work, "rdp-worker-2.0.0");
      writeFileSync(file, artifact);
      const k0 = join(work, "k0.pem");
      const k1 = join(work, "k1.pem");
      writeFileSync(k0, keys[0]!.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
      writeFileSync(k1, keys[1]!.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
      const relFile = join(work, "rel.yaml");
      const sign = await fabricctl(["release", "sign", "--cluster", CLUSTER, "--component", "rdp-worker", "--version", "2.0.0", "--artifact", `linux/amd64=${file}`, "--key", k0, "--key", k1, "--expires", "30d", "--out", relFile]);
      assert.equal(sign.code, 0, sign.stderr);
      const r = await kubectl(p.kubeconfig, ["apply", "-f", relFile]);
      assert.equal(r.code, 0, r.stderr);
      const missing = await verifiedCondition("rdp-worker-2.0.0", "ArtifactMissing");
      assert.equal(missing.status, "False");
      assert.equal((await dbRelease("rdp-worker-2.0.0"))?.verified, false);
      const push = await fabricctl(["release", "push", relFile, file, "--kubeconfig", p.kubeconfig]);
      assert.equal(push.code, 0, push.stderr);
      assert.match(push.stdout, /linux\/amd64 [0-9a-f]{12}: uploaded 3\.0 MiB/);
      assert.match(push.stderr, /\(100%\)/);
      assert.match(push.stdout, /unchanged/);
      const ok = await verifiedCondition("rdp-worker-2.0.0", "Verified");
      assert.equal(ok.status, "True");
      const obj = await getRelease("rdp-worker-2.0.0");
      assert.equal(obj.status?.verified, true);
      assert.deepEqual(obj.status?.signedBy, [keys[0]!.keyId, keys[1]!.keyId]);
      assert.deepEqual(await dbRelease("rdp-worker-2.0.0"), { verified: true, reason: "Verified" });
      const again = await fabricctl(["release", "push", relFile, "--kubeconfig", p.kubeconfig]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /already stored/);
      const audit = await p.cp.db.pool.query<{ action: string }>("SELECT action FROM audit_events WHERE object_name IN ('rdp-worker-2.0.0', $1) ORDER BY id", [createHash("sha256").update(artifact).digest("hex")]);
      assert.deepEqual(
        audit.rows.map((x) => x.action).filter((a) => a !== "release.rejected"),
        ["artifact.stored", "release.verified"],
      );
      const chain = await verifyChain(p.cp.db.pool);
      assert.equal(chain.ok, true);
    });

    it("refuses through the API a trust threshold above its keys and any change to a Release's spec", async () => {
      const bad = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: "relc-bad" }, spec: { releaseTrust: { ...trustOf(1, [keys[0]!]), threshold: 2 } } }) });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /threshold cannot exceed the number of keys/);
      const obj = releaseObj("r-unknown", { version: "0.1.0" }, [stranger]);
      const changed = await kubectl(p.kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ ...obj, spec: { ...obj.spec, version: "0.1.1" } }) });
      assert.notEqual(changed.code, 0);
      assert.match(changed.stderr, /immutable/);
    });

    it("verifies the signed example (manifests/examples) once its artifact is pushed", async () => {
      const ex = join(repoRoot, "manifests", "examples");
      const r = await kubectl(p.kubeconfig, ["apply", "-f", join(ex, "10-fabriccluster.yaml"), "-f", join(ex, "70-release.yaml")]);
      assert.equal(r.code, 0, r.stderr);
      await verifiedCondition("entry-node-1.4.2", "ArtifactMissing");
      const push = await fabricctl(["release", "push", join(ex, "70-release.yaml"), join(ex, "release", "entry-node-1.4.2-linux-amd64.sh"), "--kubeconfig", p.kubeconfig]);
      assert.equal(push.code, 0, push.stderr);
      await verifiedCondition("entry-node-1.4.2", "Verified");
    });

    it("refuses an older version offered after a newer one was verified (RollbackRefused)", async () => {
      const obj = releaseObj("r-rollback", { version: "1.9.9" }, [keys[1]!, keys[2]!]);
      await apply(obj);
      await verifiedCondition("r-rollback", "RollbackRefused");
    });

    it("keeps the accepted trust when releaseTrust changes without a signed rotation, takes a signed one", async () => {
      const next = trustOf(1, [stranger as unknown as SigningKey]);
      const strangerRel = releaseObj("r-after-rotation", { version: "3.0.0" }, [stranger]);
      await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: next } });
      await apply(strangerRel);
      const refused = await verifiedCondition("r-after-rotation", "UnknownKey");
      assert.match(refused.message, /no signature is by a trusted key/);
      const audit = await eventually(async () => (await p.cp.db.pool.query("SELECT 1 FROM audit_events WHERE action = 'release.trust.rotation-refused' AND object_name = $1", [CLUSTER])).rowCount);
      assert.ok(audit);
      // Signed by only one of the accepted threshold of two: still refused.
      await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: { ...next, rotation: signTrustRotation(next, [keys[0]!]) } } });
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await getRelease("r-after-rotation")).status?.conditions?.find((c) => c.type === "Verified")?.reason, "UnknownKey");
      await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: { ...next, rotation: signTrustRotation(next, [keys[0]!, keys[2]!]) } } });
      await verifiedCondition("r-after-rotation", "ArtifactMissing");
      const t = await p.cp.db.pool.query<{ how: string }>("SELECT how FROM release_trust WHERE cluster = $1", [CLUSTER]);
      assert.equal(t.rows[0]?.how, "rotation");
    });
  });

  describe("hostile uploads to /artifacts/v1/", () => {
    const data = randomBytes(64 * 1024);
    const sha = createHash("sha256").update(data).digest("hex");

    it("refuses a body whose hash does not match its name, stores nothing", async () => {
      const wrong = createHash("sha256").update("other").digest("hex");
      const r = await apiRaw("PUT", `/artifacts/v1/${wrong}`, { body: data });
      assert.equal(r.status, 400, r.body);
      assert.match(r.body, /HashMismatch/);
      assert.deepEqual(await stored(wrong), { row: false, file: false });
      assert.ok(tmpEmpty());
    });

    it("refuses an oversized upload before reading it (413), a chunked one without a length (411)", async () => {
      const r = await new Promise<number>((resolve, reject) => {
        const url = new URL(p.cp.api.url);
        const s = tls.connect({ host: url.hostname, port: Number(url.port), rejectUnauthorized: false }, () => {
          s.write(`PUT /artifacts/v1/${sha} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${p.cp.api.adminToken}\r\nContent-Length: 5000000000\r\n\r\n`);
        });
        let buf = "";
        s.on("data", (c) => {
          buf += c.toString();
          const m = /^HTTP\/1\.1 (\d+)/.exec(buf);
          if (m) {
            resolve(Number(m[1]));
            s.destroy();
          }
        });
        s.on("error", reject);
      });
      assert.equal(r, 413);
      const chunked = await apiRaw("PUT", `/artifacts/v1/${sha}`, { headers: { "Transfer-Encoding": "chunked" }, body: undefined });
      assert.equal(chunked.status, 411);
      assert.deepEqual(await stored(sha), { row: false, file: false });
    });

    it("stores nothing from an upload cut before its end", async () => {
      const r = await apiRaw("PUT", `/artifacts/v1/${sha}`, { headers: { "Content-Length": data.length }, cutAfter: data.subarray(0, 1000) });
      assert.equal(r.status, 0);
      await eventually(() => tmpEmpty());
      assert.deepEqual(await stored(sha), { row: false, file: false });
    });

    it("answers 4xx for path tricks, other methods and missing credentials", async () => {
      for (const path of [`/artifacts/v1/${sha.toUpperCase()}`, `/artifacts/v1/../../kubeconfig`, `/artifacts/v1/%2e%2e%2fkubeconfig`, `/artifacts/v1/${sha}/x`, `/artifacts/v1/${sha.slice(1)}`, "/artifacts/v1/"]) {
        const r = await apiRaw("PUT", path, { body: data });
        assert.ok(r.status >= 400 && r.status < 500, `${path}: ${r.status}`);
      }
      assert.equal((await apiRaw("DELETE", `/artifacts/v1/${sha}`)).status, 405);
      assert.equal((await apiRaw("PUT", `/artifacts/v1/${sha}`, { body: data, auth: false })).status, 401);
      assert.deepEqual(await stored(sha), { row: false, file: false });
      assert.ok(tmpEmpty());
    });

    it("stores one artifact once when eight uploads of it race, and answers 200 to a repeat", async () => {
      const answers = await Promise.all(Array.from({ length: 8 }, () => apiRaw("PUT", `/artifacts/v1/${sha}`, { body: data })));
      for (const a of answers) assert.ok(a.status === 201 || a.status === 200, `${a.status} ${a.body}`);
      assert.equal(answers.filter((a) => a.status === 201).length >= 1, true);
      assert.deepEqual(await stored(sha), { row: true, file: true });
      assert.deepEqual(readFileSync(join(storeDir(), "sha256", sha.slice(0, 2), sha)), data);
      const again = await apiRaw("PUT", `/artifacts/v1/${sha}`, { body: data });
      assert.equal(again.status, 200);
      assert.equal(JSON.parse(again.body).alreadyPresent, true);
      assert.equal((await p.cp.db.pool.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'artifact.stored' AND object_name = $1", [sha])).rows[0].n, 1);
      assert.ok(tmpEmpty());
    });
  });

  describe("agent downloads over mTLS (GET /v1/artifacts/<sha256>)", () => {
    const big = randomBytes(8 * 1024 * 1024 + 5);
    const bigSha = createHash("sha256").update(big).digest("hex");
    const name = "rdp-worker-4.0.0";
    let nodeA: string;

    before(async () => {
      // Back to the three keys: a rotation signed by the set now in force (the stranger's).
      const back = trustOf(2, keys);
      await apply({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CLUSTER }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" }, releaseTrust: { ...back, rotation: signTrustRotation(back, [stranger]) } } });
      const put = await apiRaw("PUT", `/artifacts/v1/${bigSha}`, { body: big });
      assert.equal(put.status, 201, put.body);
      nodeA = ids[0]!.info.node;
    });

    it("answers 404 for an unknown artifact and 403 for one no verified assignment names", async () => {
      const dir = join(work, "dl-403");
      await assert.rejects(fetchArtifact(clients[0]!, { sha256: "d".repeat(64), length: 1 }, dir), (e: unknown) => e instanceof AgentApiRequestError && e.status === 404);
      await assert.rejects(fetchArtifact(clients[0]!, { sha256: bigSha, length: big.length }, dir), (e: unknown) => e instanceof AgentApiRequestError && e.status === 403);
      // An assignment to a release that lists the artifact but is not verified (another artifact is missing) does not open the door either.
      await apply(releaseObj("r-incomplete", { version: "3.5.0", artifacts: [{ os: "linux", arch: "amd64", length: big.length, sha256: bigSha }, { os: "linux", arch: "arm64", length: 1, sha256: "f".repeat(64) }] }, [keys[0]!, keys[2]!]));
      await verifiedCondition("r-incomplete", "ArtifactMissing");
      await p.cp.db.pool.query("INSERT INTO node_release_assignments (node_id, release_name, sha256) VALUES ($1, 'r-incomplete', $2)", [nodeA, bigSha]);
      await assert.rejects(fetchArtifact(clients[0]!, { sha256: bigSha, length: big.length }, dir), (e: unknown) => e instanceof AgentApiRequestError && e.status === 403);
      assert.equal(existsSync(join(dir, bigSha)), false);
    });

    it("serves an assigned artifact of a verified release to that node only; resumes a cut download with Range", async () => {
      await apply(releaseObj(name, { version: "4.0.0", artifacts: [{ os: "linux", arch: "amd64", length: big.length, sha256: bigSha }] }, [keys[0]!, keys[2]!]));
      await verifiedCondition(name, "Verified");
      await p.cp.db.pool.query("INSERT INTO node_release_assignments (node_id, release_name, sha256) VALUES ($1, $2, $3)", [nodeA, name, bigSha]);
      await assert.rejects(fetchArtifact(clients[1]!, { sha256: bigSha, length: big.length }, join(work, "dl-b")), (e: unknown) => e instanceof AgentApiRequestError && e.status === 403);

      const url = new URL(p.server);
      const proxy = await startTcpProxy(url.hostname, Number(url.port));
      const via = new AgentApiClient(`https://127.0.0.1:${proxy.port}`, { ca: ids[0]!.serverCaPem, cert: ids[0]!.certPem, key: ids[0]!.keyPem, servername: url.hostname === "127.0.0.1" ? undefined : url.hostname });
      const dir = join(work, "dl-a");
      try {
        let cutAt = 0;
        await assert.rejects(
          fetchArtifact(via, { sha256: bigSha, length: big.length }, dir, {
            onProgress: (n) => {
              if (cutAt === 0 && n > 1024 * 1024) {
                cutAt = n;
                proxy.cut();
              }
            },
          }),
          (e: unknown) => !(e instanceof ReleaseError),
        );
        const partial = statSync(join(dir, `${bigSha}.partial`)).size;
        assert.ok(partial > 0 && partial < big.length, `partial ${partial}`);
        proxy.restore();
        const seen: number[] = [];
        const path = await fetchArtifact(via, { sha256: bigSha, length: big.length }, dir, { onProgress: (n) => seen.push(n) });
        assert.equal(seen[0], partial, "the second attempt starts where the first stopped");
        assert.deepEqual(readFileSync(path), big);
        assert.equal(existsSync(join(dir, `${bigSha}.partial`)), false);
      } finally {
        via.close();
        await proxy.close();
      }
    });

    it("refuses a body longer than the signed length (TooLong) and a corrupted one (HashMismatch), keeping nothing", async () => {
      const dir = join(work, "dl-hostile");
      mkdirSync(dir, { recursive: true });
      await assert.rejects(fetchArtifact(clients[0]!, { sha256: bigSha, length: big.length - 1000 }, dir), (e: unknown) => e instanceof ReleaseError && e.code === "TooLong");
      assert.deepEqual(readdirSync(dir), []);
      const file = join(storeDir(), "sha256", bigSha.slice(0, 2), bigSha);
      const original = readFileSync(file);
      const corrupted = Buffer.from(original);
      corrupted[12345] ^= 0xff;
      writeFileSync(file, corrupted);
      try {
        await assert.rejects(fetchArtifact(clients[0]!, { sha256: bigSha, length: big.length }, dir), (e: unknown) => e instanceof ReleaseError && e.code === "HashMismatch");
        assert.deepEqual(readdirSync(dir), []);
      } finally {
        writeFileSync(file, original);
      }
    });

    it("answers a Range request with 206 and Content-Range", async () => {
      const r = await clients[0]!.requestBytes("GET", `/v1/artifacts/${bigSha}`, undefined, { Range: "bytes=100-199" }, { maxBytes: 1000 });
      assert.equal(r.status, 206);
      assert.equal(r.headers["content-range"], `bytes 100-199/${big.length}`);
      assert.deepEqual(r.body, big.subarray(100, 200));
      await assert.rejects(clients[0]!.requestBytes("GET", `/v1/artifacts/${bigSha}`, undefined, { Range: `bytes=${big.length}-` }), (e: unknown) => e instanceof AgentApiRequestError && e.status === 416);
      await assert.rejects(clients[0]!.requestBytes("GET", `/v1/artifacts/${bigSha}`, undefined, { Range: "bytes=abc" }), (e: unknown) => e instanceof AgentApiRequestError && e.status === 400);
    });
  });
});
