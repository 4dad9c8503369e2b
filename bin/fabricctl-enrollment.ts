/**
 * fabricctl enrollment commands (through the kube API, with a kubeconfig):
 *
 *   fabricctl token create --cluster C [--name N] [--ttl 30m] [--max-uses 1] [--roles a,b] [--auto-approve] [--kubeconfig F]
 *       creates a JoinToken, waits for its Secret, prints the raw token once
 *       and the full join command (server and CA pin from ConfigMap
 *       fabric-system/fabric-agent-api).
 *   fabricctl join approve|deny NAME [--reason TEXT] [--kubeconfig F]
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { AGENT_API_CONFIGMAP } from "../agentapi/discovery.js";
import { RESOURCES } from "../lib/api/types.generated.js";
import { loadKubeConfig } from "../lib/kube/kubeconfig.js";
import { FABRIC_NAMESPACE } from "../lib/kube/namespace.js";

/** `fabricctl token create`. */
export async function tokenCreate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      cluster: { type: "string" },
      name: { type: "string" },
      ttl: { type: "string", default: "30m" },
      "max-uses": { type: "string", default: "1" },
      roles: { type: "string", default: "" },
      "node-group": { type: "string" },
      "auto-approve": { type: "boolean", default: false },
      description: { type: "string" },
      kubeconfig: { type: "string" },
    },
    strict: true,
  });
  if (values.cluster === undefined) throw new Error("token create needs --cluster");
  const kc = loadKubeConfig(values.kubeconfig);
  const api = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const r = RESOURCES.JoinToken;
  const name = values.name ?? `${values.cluster}-${randomBytes(3).toString("hex")}`;
  const spec: Record<string, unknown> = { cluster: values.cluster, ttl: values.ttl, maxUses: Number(values["max-uses"]), autoApprove: values["auto-approve"] };
  const roles = values.roles.split(",").filter((s) => s !== "");
  if (roles.length > 0) spec.allowedRoles = roles;
  if (values["node-group"] !== undefined) spec.nodeGroup = values["node-group"];
  if (values.description !== undefined) spec.description = values.description;
  await api.createClusterCustomObject({ group: r.group, version: r.version, plural: r.plural, body: { apiVersion: `${r.group}/${r.version}`, kind: "JoinToken", metadata: { name }, spec } });
  const deadline = Date.now() + 30_000;
  let secretName: string | undefined;
  while (Date.now() < deadline) {
    const obj = (await api.getClusterCustomObject({ group: r.group, version: r.version, plural: r.plural, name })) as { status?: { secretRef?: { name: string }; conditions?: Array<{ type: string; status: string; message: string }> } };
    secretName = obj.status?.secretRef?.name;
    if (secretName !== undefined) break;
    const ready = obj.status?.conditions?.find((c) => c.type === "Ready");
    if (ready?.status === "False") throw new Error(`token ${name} is not usable: ${ready.message}`);
    await new Promise((res) => setTimeout(res, 250));
  }
  if (secretName === undefined) throw new Error(`token ${name} got no Secret within 30s (are the controllers running?)`);
  const secret = await core.readNamespacedSecret({ name: secretName, namespace: FABRIC_NAMESPACE });
  const token = Buffer.from(secret.data?.token ?? "", "base64").toString("utf8");
  let server = "https://CONTROL-PLANE:8443";
  let caHash = "sha256:<see ConfigMap fabric-system/fabric-agent-api>";
  try {
    const cm = await core.readNamespacedConfigMap({ name: AGENT_API_CONFIGMAP, namespace: FABRIC_NAMESPACE });
    server = cm.data?.server ?? server;
    caHash = cm.data?.caHash ?? caHash;
  } catch {
    // No agent API published: print placeholders.
  }
  process.stdout.write(`join token ${name} for cluster ${values.cluster} (ttl ${values.ttl}, max uses ${values["max-uses"]}${values["auto-approve"] ? ", auto-approve" : ""}):

  ${token}

This is the only time fabricctl prints it. On the host, run:

  fabric-agent join --server ${server} --token ${token} --ca-hash ${caHash} --cluster ${values.cluster}${roles.length > 0 ? ` --roles ${roles.join(",")}` : ""}

then approve the request: fabricctl join approve <joinrequest> (kubectl get joinrequests)
`);
  return 0;
}

/** `fabricctl join approve|deny NAME`. */
export async function joinDecide(decision: "Approved" | "Denied", args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { reason: { type: "string" }, kubeconfig: { type: "string" } }, allowPositionals: true, strict: true });
  const name = positionals[0];
  if (name === undefined) throw new Error(`join ${decision === "Approved" ? "approve" : "deny"} needs a JoinRequest name`);
  const kc = loadKubeConfig(values.kubeconfig);
  const api = kc.makeApiClient(CustomObjectsApi);
  const r = RESOURCES.JoinRequest;
  const body = { spec: { decision, ...(values.reason !== undefined ? { decisionReason: values.reason } : {}) } };
  await api.patchClusterCustomObject({ group: r.group, version: r.version, plural: r.plural, name, body }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
  process.stdout.write(`joinrequest/${name} ${decision === "Approved" ? "approved" : "denied"}\n`);
  return 0;
}
