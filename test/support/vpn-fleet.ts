/**
 * Test support for VPN lease tests: nodes enrolled with the agent's own join
 * code (real mTLS identities), their agent API clients, heartbeats, and the
 * kubectl objects a VPN connection needs.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { AgentApiClient, AgentApiRequestError } from "../../agent/http/client.js";
import type { StoredIdentity } from "../../agent/enroll/identity-store.js";
import { join } from "../../agent/enroll/join.js";
import { eventually, kubectl, tempStateDir } from "./controlplane.js";

/** Capabilities that let a node hold both VPN roles. */
export const VPN_CAPABILITIES = ["can_run_vpn_exit", "can_egress_internet", "can_run_vpn_connector", "can_egress_private_network"];

/** Enrolled nodes by short name. */
export interface Fleet {
  ids: Map<string, StoredIdentity>;
  dirs: string[];
  cleanup(): void;
}

/** Joins `names` to `cluster` (token auto-approves), `parallel` at a time. */
export async function joinFleet(o: { server: string; caHash: string; token: string; cluster: string; names: readonly string[]; capabilities?: string[]; parallel?: number }): Promise<Fleet> {
  const ids = new Map<string, StoredIdentity>();
  const dirs: string[] = [];
  const queue = [...o.names];
  const worker = async (): Promise<void> => {
    for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
      const dir = tempStateDir("fabric-vpn-agent-");
      dirs.push(dir);
      ids.set(n, await join({ server: o.server, token: o.token, caHash: o.caHash, stateDir: dir, nodeName: n, cluster: o.cluster, capabilities: o.capabilities ?? VPN_CAPABILITIES, pollIntervalMs: 200, timeoutMs: 120_000 }));
    }
  };
  await Promise.all(Array.from({ length: o.parallel ?? 6 }, worker));
  return { ids, dirs, cleanup: () => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })) };
}

/** An mTLS client of the node. */
export function nodeClient(server: string, id: StoredIdentity, maxSockets = 2): AgentApiClient {
  return new AgentApiClient(server, { ca: id.serverCaPem, cert: id.certPem, key: id.keyPem }, { maxSockets });
}

/** One Healthy heartbeat. */
export async function heartbeat(c: AgentApiClient, seq: number): Promise<void> {
  await c.request("POST", "/v1/heartbeat", { seq, agentVersion: "0.1.0", capabilities: VPN_CAPABILITIES, facts: {}, health: { status: "Healthy" } });
}

/** A POST answered with its status and error code (2xx: code ""). */
export async function post(c: AgentApiClient, path: string, body: unknown): Promise<{ status: number; code: string; body: unknown; message: string }> {
  try {
    const r = await c.request<unknown>("POST", path, body, {}, { decode: "json" });
    return { status: r.status, code: "", body: r.body, message: "" };
  } catch (err) {
    if (err instanceof AgentApiRequestError) return { status: err.status, code: err.code, body: undefined, message: err.message };
    throw err;
  }
}

/** kubectl apply of one object (JSON). */
export async function apply(kubeconfig: string, obj: Record<string, unknown>): Promise<void> {
  const r = await kubectl(kubeconfig, ["apply", "-f", "-"], { input: JSON.stringify(obj) });
  assert.equal(r.code, 0, r.stderr);
}

/** Creates a namespace if missing. */
export async function ensureNamespace(kubeconfig: string, ns: string): Promise<void> {
  await apply(kubeconfig, { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
}

/** A VPNConnection. */
export function vpnConnection(ns: string, name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: "accessfabric.io/v1alpha1", kind: "VPNConnection", metadata: { namespace: ns, name }, spec };
}

/** A wg-quick style credential Secret. */
export function credentialSecret(ns: string, name: string, text: string, key = "credentials"): Record<string, unknown> {
  return { apiVersion: "v1", kind: "Secret", metadata: { namespace: ns, name }, stringData: { [key]: text } };
}

/** Waits until `pool` sees every node Healthy (published health). */
export async function waitHealthy(query: (sql: string, params: unknown[]) => Promise<{ rows: Array<{ n: string }> }>, nodes: readonly string[], timeoutMs = 60_000): Promise<void> {
  await eventually(async () => Number((await query("SELECT count(*) AS n FROM node_health WHERE node = ANY($1::text[]) AND health = 'Healthy'", [nodes])).rows[0]?.n) === nodes.length, timeoutMs, 200);
}
