/**
 * The VPNConnection controller through the real API server and kubectl:
 * status (lease, eligible and blocked nodes with reasons, Ready), a missing
 * credential Secret, the holder's reported owner state, `fabricctl vpn
 * fence` ending the lease and bumping the token (grant history
 * end_reason `fenced`), a holder that becomes ineligible losing its lease,
 * the expiry sweep, events, and the audit chain intact after all of it.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import type { AgentApiClient } from "../../agent/http/client.js";
import { verifyChain } from "../../lib/audit/chain.js";
import { eventually, kubectl, repoRoot } from "../support/controlplane.js";
import { createToken, startEnrollmentPlane, type EnrollmentPlane } from "../support/enrollment.js";
import { apply, credentialSecret, ensureNamespace, heartbeat, joinFleet, nodeClient, post, vpnConnection, waitHealthy, type Fleet } from "../support/vpn-fleet.js";

const CL = "vpn-ctl";
const NS = "org-ctl";
const fq = (n: string): string => `${CL}.${n}`;

interface Status {
  activeLease?: { holder: string; fencingToken: number; expiresAt?: string };
  eligibleNodes?: string[];
  blockedNodes?: Array<{ node: string; reason: string }>;
  observedFence?: number;
  ownerState?: string;
  conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
}

function fabricctl(kubeconfig: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(repoRoot, "bin", "fabricctl"), [...args, "--kubeconfig", kubeconfig], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1, stdout, stderr });
    });
  });
}

describe("VPNConnection controller through kubectl and fabricctl", function () {
  this.timeout(300_000);
  let p: EnrollmentPlane;
  let fleet: Fleet;
  const clients = new Map<string, AgentApiClient>();
  let beats: NodeJS.Timeout | undefined;
  const status = async (name: string): Promise<Status> => {
    const r = await kubectl(p.kubeconfig, ["get", "vpnconnection", "-n", NS, name, "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { status?: Status }).status ?? {};
  };
  const ready = (s: Status): string => `${s.conditions?.find((c) => c.type === "Ready")?.status}/${s.conditions?.find((c) => c.type === "Ready")?.reason}`;
  const lastGrant = async (conn: string): Promise<{ token: number; holder: string; end_reason: string | null } | undefined> => {
    const r = await p.cp.db.pool.query<{ token: string; holder: string; end_reason: string | null }>("SELECT token, holder, end_reason FROM vpn_grants WHERE connection = $1 ORDER BY token DESC LIMIT 1", [conn]);
    const row = r.rows[0];
    return row === undefined ? undefined : { token: Number(row.token), holder: row.holder, end_reason: row.end_reason };
  };
  const acquire = async (node: string, conn: string): Promise<number> => {
    const r = await post(clients.get(node)!, "/v1/vpn/lease/acquire", { connection: conn });
    const b = r.body as { granted?: boolean; token?: number } | undefined;
    assert.equal(b?.granted, true, `${node}: ${r.status} ${r.code} ${r.message} ${JSON.stringify(b)}`);
    return b?.token ?? 0;
  };

  before(async () => {
    p = await startEnrollmentPlane();
    await apply(p.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name: CL }, spec: { enrollmentPolicy: { approval: "TokenAutoApprove" } } });
    const w = await kubectl(p.kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${CL}`, "--timeout=60s"]);
    assert.equal(w.code, 0, w.stderr);
    const token = await createToken(p.kubeconfig, "vpn-ctl-join", { cluster: CL, maxUses: 10, autoApprove: true });
    fleet = await joinFleet({ server: p.server, caHash: p.caHash, token, cluster: CL, names: ["a", "b", "c"] });
    for (const [n, id] of fleet.ids) clients.set(n, nodeClient(p.server, id));
    let seq = 1;
    for (const c of clients.values()) await heartbeat(c, seq++);
    // Keep the nodes Healthy (published health turns Unknown 40 s after the last heartbeat).
    beats = setInterval(() => {
      seq++;
      for (const c of clients.values()) void heartbeat(c, seq).catch(() => undefined);
    }, 5000);
    await waitHealthy((sql, params) => p.cp.db.pool.query(sql, params), ["a", "b", "c"].map(fq));
    await ensureNamespace(p.kubeconfig, NS);
    await apply(p.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "ctl-connectors" }, spec: { cluster: CL, role: "vpn-connector", nodeNames: [fq("a"), fq("b")] } });
  });
  after(async () => {
    clearInterval(beats);
    await p?.stop();
    fleet?.cleanup();
  });

  it("publishes eligibility with reasons, a missing credential, then the lease and the holder's reported state", async () => {
    await apply(p.kubeconfig, vpnConnection(NS, "site", { cluster: CL, mode: "Connector", allowedNodes: [fq("a"), fq("b"), fq("c"), "vpn-ctl.ghost"], credentialSecretRef: { name: "site-creds" }, leaseDuration: "4s" }));
    const s1 = await eventually(async () => {
      const s = await status("site");
      return ready(s) === "False/CredentialMissing" ? s : undefined;
    }, 60_000, 200);
    assert.deepEqual(s1.eligibleNodes, [fq("a"), fq("b")]);
    assert.deepEqual(Object.fromEntries((s1.blockedNodes ?? []).map((b) => [b.node, b.reason])), { [fq("c")]: "MissingRole", "vpn-ctl.ghost": "NotFound" });
    // No credential: the holder would get 404 NoCredential, never another Secret.
    await apply(p.kubeconfig, credentialSecret(NS, "site-creds", "[Interface]\nPrivateKey = x\n"));
    // The controller follows the credential Secret: applying it brings the reconcile. 30 s is half the
    // controller's periodic look, so this fails when only that look would notice the Secret.
    await eventually(async () => ready(await status("site")) === "False/NoHolder", 30_000, 200);
    const token = await acquire("a", `${NS}/site`);
    await clients.get("a")!.request("POST", "/v1/status/vpn", { version: 1, body: { connections: [{ connection: `${NS}/site`, state: "assigned", token, tunnel: "up" }] } });
    const s2 = await eventually(async () => {
      const s = await status("site");
      return s.activeLease?.fencingToken === token && s.ownerState === "Assigned" ? s : undefined;
    }, 30_000, 200);
    assert.equal(s2.activeLease?.holder, fq("a"));
    assert.equal(ready(s2), "True/Owned");
    const ev = await kubectl(p.kubeconfig, ["get", "events", "-n", NS, "-o", "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}"]);
    assert.match(ev.stdout, /LeaseGranted/);
    assert.match(ev.stdout, /NotOwnable/);
  });

  it("fabricctl vpn fence ends the lease at once and the next grant gets a higher token", async () => {
    const conn = `${NS}/site`;
    const before = await lastGrant(conn);
    assert.ok(before !== undefined && before.end_reason === null);
    const r = await fabricctl(p.kubeconfig, ["vpn", "fence", conn]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /fence set to 1/);
    assert.match(r.stdout, /fence 1 applied/);
    assert.equal((await lastGrant(conn))?.end_reason, "fenced");
    const s = await status("site");
    assert.equal(s.observedFence, 1);
    // The fenced holder can neither renew nor fetch the credential.
    const renew = await post(clients.get("a")!, "/v1/vpn/lease/renew", { connection: conn, token: before.token });
    assert.deepEqual([renew.status, renew.code], [409, "LeaseLost"]);
    const cred = await post(clients.get("a")!, "/v1/vpn/credential", { connection: conn, token: before.token });
    assert.deepEqual([cred.status, cred.code], [403, "NotHolder"]);
    const next = await acquire("b", conn);
    assert.ok(next >= before.token + 2, `token ${next} after fenced ${before.token} (the fence bumps it)`);
    const st = await fabricctl(p.kubeconfig, ["vpn", "status", "-o", "json"]);
    assert.equal(st.code, 0, st.stderr);
    const row = (JSON.parse(st.stdout) as { connections: Array<{ connection: string; token?: number }> }).connections.find((x) => x.connection === conn);
    await eventually(async () => (await status("site")).activeLease?.fencingToken === next, 30_000, 200);
    assert.ok(row !== undefined);
    const usage = await fabricctl(p.kubeconfig, ["vpn", "fence", "not-a-ref"]);
    assert.equal(usage.code, 2);
    const missing = await fabricctl(p.kubeconfig, ["vpn", "fence", `${NS}/nope`]);
    assert.equal(missing.code, 2, missing.stderr);
  });

  it("ends the lease of a holder that became ineligible, and sweeps expired leases", async () => {
    const conn = `${NS}/site`;
    // b takes a fresh lease and keeps renewing it (every second, TTL 4 s).
    await eventually(async () => (await lastGrant(conn))?.end_reason === "expired", 30_000, 200);
    const bt = await acquire("b", conn);
    let renewing = true;
    const renewals: number[] = [];
    const loop = (async () => {
      while (renewing) {
        renewals.push((await post(clients.get("b")!, "/v1/vpn/lease/renew", { connection: conn, token: bt })).status);
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    try {
      // b loses the role: its lease ends (ineligible) although it renews.
      await apply(p.kubeconfig, { apiVersion: "accessfabric.io/v1alpha1", kind: "RoleAssignment", metadata: { name: "ctl-connectors" }, spec: { cluster: CL, role: "vpn-connector", nodeNames: [fq("a")] } });
      await eventually(async () => {
        const g = await lastGrant(conn);
        return g?.token === bt && g.end_reason === "ineligible";
      }, 30_000, 200);
      await eventually(() => renewals.includes(409), 10_000, 100);
    } finally {
      renewing = false;
      await loop;
    }
    assert.equal(renewals[0], 200);
    // a takes it and lets it lapse: the sweep closes it as expired by the database clock.
    const t = await acquire("a", conn);
    await eventually(async () => {
      const g = await lastGrant(conn);
      return g?.token === t && g.end_reason === "expired";
    }, 30_000, 200);
    await eventually(async () => (await status("site")).activeLease === undefined, 30_000, 200);
    const audit = await p.cp.db.pool.query<{ action: string }>("SELECT DISTINCT action FROM audit_events WHERE object_name = $1", [conn]);
    const actions = new Set(audit.rows.map((r) => r.action));
    for (const a of ["vpn.connection.created", "vpn.lease.granted", "vpn.fenced", "vpn.lease.ineligible", "vpn.lease.expired"]) assert.ok(actions.has(a), `no ${a} in ${[...actions].join(",")}`);
    const chain = await verifyChain(p.cp.db.pool);
    assert.equal(chain.ok, true, JSON.stringify(chain));
  });
});
