/**
 * `fabricctl token create`: checks the cluster first (it exists, the ttl is
 * within its enrollmentPolicy.maxTokenTTL), creates the JoinToken, waits for
 * its Secret and prints the raw token once with a join command that works:
 * server and CA pin from ConfigMap fabric-system/fabric-agent-api, the roles
 * asked for, and the capabilities those roles and the cluster's
 * requireCapabilities need. A token whose later steps fail is deleted, so a
 * failed run leaves nothing behind.
 */
import { randomBytes } from "node:crypto";
import type { FabricCluster, JoinToken } from "../../lib/api/types.generated.js";
import { parseDuration } from "../../lib/enrollment/token.js";
import { ROLE_REQUIREMENTS } from "../../lib/enrollment/roles.js";
import { FABRIC_NAMESPACE } from "../../lib/kube/namespace.js";
import { UsageError, describeError } from "../errors.js";
import type { KubeClient } from "../kube/client.js";

/** Name of the ConfigMap where the control plane publishes its agent API (agentapi/discovery.ts). */
export const AGENT_API_CONFIGMAP = "fabric-agent-api";

/** The cluster's default maxTokenTTL (schemas/fabriccluster.yaml). */
const DEFAULT_MAX_TOKEN_TTL = "24h";

/** Options of `token create`. */
export interface TokenCreateOptions {
  cluster?: string;
  name?: string;
  ttl: string;
  maxUses: string;
  roles: string;
  nodeGroup?: string;
  autoApprove: boolean;
  description?: string;
  /** How long to wait for the token's Secret. */
  waitMs?: number;
}

/** Capabilities a host needs to join with these roles under this cluster's policy, sorted. */
export function joinCapabilities(cluster: FabricCluster, roles: readonly string[]): string[] {
  const caps = new Set(cluster.spec.enrollmentPolicy?.requireCapabilities ?? []);
  for (const r of roles) for (const c of ROLE_REQUIREMENTS[r] ?? []) caps.add(c);
  return [...caps].sort();
}

/** Runs `token create`; writes the token and the join command to `out`. */
export async function tokenCreate(client: KubeClient, o: TokenCreateOptions, out: (s: string) => void): Promise<number> {
  const clusterName = o.cluster;
  if (clusterName === undefined || clusterName === "") throw new UsageError("token create needs --cluster");
  let ttlMs: number;
  try {
    ttlMs = parseDuration(o.ttl);
  } catch {
    throw new UsageError(`--ttl: invalid duration "${o.ttl}" (use e.g. 30m, 2h, 1h30m)`);
  }
  const maxUses = Number(o.maxUses);
  if (!Number.isInteger(maxUses) || maxUses < 1) throw new UsageError(`--max-uses must be a positive integer, not "${o.maxUses}"`);
  const roles = o.roles.split(",").map((s) => s.trim()).filter((s) => s !== "");

  // The cluster first: a token for a cluster that is not there, or one the controller would cut short, is refused before anything is created.
  const cluster = await client.get<FabricCluster>("FabricCluster", clusterName);
  const maxTtl = cluster.spec.enrollmentPolicy?.maxTokenTTL ?? DEFAULT_MAX_TOKEN_TTL;
  if (ttlMs > parseDuration(maxTtl)) {
    throw new UsageError(`--ttl ${o.ttl} exceeds the maximum token lifetime of cluster ${clusterName} (spec.enrollmentPolicy.maxTokenTTL: ${maxTtl}); ask for ${maxTtl} or less, or raise the cluster's maxTokenTTL`);
  }

  const name = o.name ?? `${clusterName}-${randomBytes(3).toString("hex")}`;
  const spec: Record<string, unknown> = { cluster: clusterName, ttl: o.ttl, maxUses, autoApprove: o.autoApprove };
  if (roles.length > 0) spec.allowedRoles = roles;
  if (o.nodeGroup !== undefined) spec.nodeGroup = o.nodeGroup;
  if (o.description !== undefined) spec.description = o.description;
  await client.create("JoinToken", name, spec);

  let token: string;
  let server = "https://CONTROL-PLANE:8443";
  let caHash = "sha256:<see ConfigMap fabric-system/fabric-agent-api>";
  try {
    token = await waitForToken(client, name, o.waitMs ?? 30_000);
    try {
      const cm = await client.getNamespaced<{ data?: Record<string, string> }>("v1", "configmaps", FABRIC_NAMESPACE, AGENT_API_CONFIGMAP);
      server = cm.data?.server ?? server;
      caHash = cm.data?.caHash ?? caHash;
    } catch {
      // No agent API published (controllers run elsewhere): print placeholders.
    }
  } catch (err) {
    // Nothing half-made stays behind: the token is unusable to the operator, who never saw it.
    try {
      await client.delete("JoinToken", name);
    } catch (cleanup) {
      throw new Error(`${describeError(err)}; deleting jointoken ${name} failed too: ${describeError(cleanup)}`, { cause: err });
    }
    throw new Error(`${describeError(err)} (jointoken ${name} deleted)`, { cause: err });
  }

  const caps = joinCapabilities(cluster, roles);
  const command = [
    "fabric-agent join",
    `--server ${server}`,
    `--token ${token}`,
    `--ca-hash ${caHash}`,
    `--cluster ${clusterName}`,
    ...(roles.length > 0 ? [`--roles ${roles.join(",")}`] : []),
    ...(caps.length > 0 ? [`--capabilities ${caps.join(",")}`] : []),
  ].join(" ");
  out(`join token ${name} for cluster ${clusterName} (ttl ${o.ttl}, max uses ${maxUses}${o.autoApprove ? ", auto-approve" : ""}):

  ${token}

This is the only time fabricctl prints it. On the host, run:

  ${command}
${caps.length > 0 ? `\n--capabilities declares what the host can do (${caps.join(", ")}: required by ${capabilitySources(cluster, roles)}); run it only on hosts that can.\n` : ""}`);
  return 0;
}

function capabilitySources(cluster: FabricCluster, roles: readonly string[]): string {
  const parts: string[] = [];
  if ((cluster.spec.enrollmentPolicy?.requireCapabilities ?? []).length > 0) parts.push(`cluster ${cluster.metadata.name ?? ""}`);
  const withCaps = roles.filter((r) => (ROLE_REQUIREMENTS[r] ?? []).length > 0);
  if (withCaps.length > 0) parts.push(`role${withCaps.length > 1 ? "s" : ""} ${withCaps.join(", ")}`);
  return parts.join(" and ");
}

/** Waits for the token's Secret and returns the raw token; a Ready=False token fails at once. */
async function waitForToken(client: KubeClient, name: string, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const obj = await client.get<JoinToken>("JoinToken", name);
    const secretName = obj.status?.secretRef?.name;
    if (secretName !== undefined) {
      const secret = await client.getNamespaced<{ data?: Record<string, string> }>("v1", "secrets", obj.status?.secretRef?.namespace ?? FABRIC_NAMESPACE, secretName);
      const token = Buffer.from(secret.data?.token ?? "", "base64").toString("utf8");
      if (token === "") throw new Error(`secret ${secretName} of jointoken ${name} holds no token`);
      return token;
    }
    const ready = obj.status?.conditions?.find((c) => c.type === "Ready");
    if (ready?.status === "False") throw new Error(`token ${name} is not usable: ${ready.reason ?? ""}: ${ready.message ?? ""}`);
    if (Date.now() > deadline) throw new Error(`token ${name} got no Secret within ${Math.round(waitMs / 1000)}s (are the controllers running?)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
