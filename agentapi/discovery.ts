/**
 * Publishes where agents enroll: ConfigMap fabric-system/fabric-agent-api
 * with the agent API URL, the CA pin (--ca-hash) and the CA itself (like
 * kubeadm's cluster-info). `fabricctl token create` reads it to print the
 * full join command.
 */
import { CoreV1Api, type KubeConfig, type V1ConfigMap } from "@kubernetes/client-node";
import { FABRIC_NAMESPACE } from "../lib/kube/namespace.js";
import type { Logger } from "../lib/log.js";

/** Name of the ConfigMap. */
export const AGENT_API_CONFIGMAP = "fabric-agent-api";

/** Writes the ConfigMap (creating the namespace if needed). Failures are logged, not fatal. */
export async function publishAgentApiInfo(kc: KubeConfig, info: { url: string; caHash: string; caPem: string }, log: Logger): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  const body: V1ConfigMap = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: AGENT_API_CONFIGMAP, namespace: FABRIC_NAMESPACE },
    data: { server: info.url, caHash: info.caHash, "ca.crt": info.caPem },
  };
  try {
    try {
      await core.createNamespace({ body: { apiVersion: "v1", kind: "Namespace", metadata: { name: FABRIC_NAMESPACE } } });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 409) throw err;
    }
    try {
      await core.createNamespacedConfigMap({ namespace: FABRIC_NAMESPACE, body });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 409) throw err;
      await core.replaceNamespacedConfigMap({ name: AGENT_API_CONFIGMAP, namespace: FABRIC_NAMESPACE, body });
    }
  } catch (err) {
    log.warn("publishing the agent api configmap failed", { err });
  }
}
