/**
 * Test support for enrollment: a control plane in this process with
 * controllers and the agent API, clusters and tokens made with the real
 * kubectl, and raw enrollment calls made with the agent's own code.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { runControlPlane, type ControlPlane, type ControlPlaneControllers } from "../../controlplane/controlplane.js";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import { generateNodeKey } from "../../agent/enroll/identity-store.js";
import { fetchPinnedCa } from "../../agent/enroll/join.js";
import { createCsr } from "../../lib/crypto/x509.js";
import type { EnrollRequest, EnrollResponse } from "../../lib/enrollment/protocol.js";
import { loadKubeConfig } from "../../lib/kube/kubeconfig.js";
import { logger } from "../../lib/log.js";
import { eventually, kubectl, tempStateDir } from "./controlplane.js";
import { seedStateDir } from "./pg-template.js";

/** A control plane with controllers and the agent API. */
export interface EnrollmentPlane {
  cp: ControlPlane;
  stateDir: string;
  kubeconfig: string;
  api: CustomObjectsApi;
  server: string;
  caHash: string;
  stop(): Promise<void>;
}

/** Starts one (certificate lifetime, retention and node-health settings adjustable). */
export async function startEnrollmentPlane(
  opts: { nodeCertLifetimeMs?: number; joinRequestRetentionMs?: number; expiredTokenRetentionMs?: number; renewGraceMs?: number; nodeHealth?: ControlPlaneControllers["nodeHealth"] } = {},
): Promise<EnrollmentPlane> {
  const { renewGraceMs, nodeHealth, ...enrollment } = opts;
  const stateDir = tempStateDir();
  await seedStateDir(stateDir);
  const cp = await runControlPlane({
    stateDir,
    host: "127.0.0.1",
    port: 0,
    metricsPort: 0,
    fsync: false,
    log: logger("test-controlplane"),
    controllers: { identity: "test-enroll", sweepIntervalMs: 1000, enrollment, ...(nodeHealth !== undefined ? { nodeHealth } : {}) },
    agentPort: 0,
    agentApi: { rateLimit: { burst: 100_000, perSecond: 100_000 }, ...(renewGraceMs !== undefined ? { renewGraceMs } : {}) },
  });
  const agentApi = cp.agentApi;
  if (agentApi === undefined) throw new Error("agent api did not start");
  return {
    cp,
    stateDir,
    kubeconfig: cp.api.kubeconfigPath,
    api: loadKubeConfig(cp.api.kubeconfigPath).makeApiClient(CustomObjectsApi),
    server: agentApi.url,
    caHash: agentApi.caHash,
    async stop() {
      await cp.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

/** Applies a FabricCluster and waits until Ready. */
export async function applyCluster(kubeconfig: string, name: string, approval: "Manual" | "TokenAutoApprove" = "Manual"): Promise<void> {
  const r = await kubectl(kubeconfig, ["apply", "-f", "-"], {
    input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "FabricCluster", metadata: { name }, spec: { enrollmentPolicy: { approval } } }),
  });
  assert.equal(r.code, 0, r.stderr);
  const w = await kubectl(kubeconfig, ["wait", "--for=condition=Ready", `fabriccluster/${name}`, "--timeout=60s"]);
  assert.equal(w.code, 0, w.stderr);
}

/** Applies a JoinToken and returns the raw token read from its Secret with kubectl. */
export async function createToken(kubeconfig: string, name: string, spec: Record<string, unknown>): Promise<string> {
  const r = await kubectl(kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "accessfabric.io/v1alpha1", kind: "JoinToken", metadata: { name }, spec }) });
  assert.equal(r.code, 0, r.stderr);
  const ref = await eventually(async () => {
    const g = await kubectl(kubeconfig, ["get", "jointoken", name, "-o", "jsonpath={.status.secretRef.namespace}/{.status.secretRef.name}"]);
    return g.code === 0 && g.stdout.includes("/jointoken-") ? g.stdout : undefined;
  }, 30_000);
  const [ns, secret] = ref.split("/");
  const s = await kubectl(kubeconfig, ["get", "secret", "-n", ns ?? "", secret ?? "", "-o", "jsonpath={.data.token}"]);
  assert.equal(s.code, 0, s.stderr);
  return Buffer.from(s.stdout, "base64").toString("utf8");
}

/** One raw enrollment with the agent's code: fresh key, CSR, POST. */
export async function enrollOnce(
  client: AgentApiClient,
  body: Partial<EnrollRequest> & { token: string; nodeName: string },
  key = generateNodeKey(),
): Promise<{ ok: true; status: number; body: EnrollResponse } | { ok: false; status: number; code: string; message: string }> {
  const req: EnrollRequest = {
    hostFingerprint: `sha256:${"ab".repeat(32)}`,
    capabilities: [],
    facts: { hostname: body.nodeName },
    requestedRoles: [],
    csr: createCsr(key.privateKey, key.publicKey, body.nodeName),
    ...body,
  };
  try {
    const r = await client.request<EnrollResponse>("POST", "/v1/enroll", req);
    return { ok: true, status: r.status, body: r.body };
  } catch (err) {
    if (err instanceof AgentApiRequestError) return { ok: false, status: err.status, code: err.code, message: err.message };
    throw err;
  }
}

/** A pinned client for the plane's agent API. */
export async function pinnedClient(p: EnrollmentPlane): Promise<AgentApiClient> {
  return new AgentApiClient(p.server, { ca: await fetchPinnedCa(p.server, p.caHash) });
}
