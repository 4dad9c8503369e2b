/**
 * The namespace Access Fabric keeps its own namespaced objects in: the join
 * token Secrets (written by the JoinToken controller, read by `fabricctl
 * token create`) and the agent API ConfigMap (published by the agent API).
 * It lives here because those sides meet only through the Kubernetes API.
 */

/** Namespace of the join token Secrets and the agent API ConfigMap. */
export const FABRIC_NAMESPACE = "fabric-system";
