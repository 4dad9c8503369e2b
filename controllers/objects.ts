/**
 * The fabric kinds as the controller runtime sees them: the generated spec
 * and status types with client-node's object metadata (the generated
 * ObjectMeta types timestamps as strings, client-node as Date; controllers
 * read neither).
 */
import type { KubernetesObject, V1ObjectMeta } from "@kubernetes/client-node";
import type { FabricCluster, NodeGroup } from "../lib/api/types.generated.js";

/** A generated kind T usable with Informer and Controller. */
export type Kube<T extends { metadata: unknown }> = Omit<T, "metadata"> & KubernetesObject & { metadata: V1ObjectMeta };

/** A FabricCluster as cached by an informer. */
export type FabricClusterObject = Kube<FabricCluster>;
/** A NodeGroup as cached by an informer. */
export type NodeGroupObject = Kube<NodeGroup>;

import type { FabricNode, JoinRequest, JoinToken, RoleAssignment, ServiceWorkload } from "../lib/api/types.generated.js";
/** A JoinToken as cached by an informer. */
export type JoinTokenObject = Kube<JoinToken>;
/** A JoinRequest as cached by an informer. */
export type JoinRequestObject = Kube<JoinRequest>;
/** A FabricNode as cached by an informer. */
export type FabricNodeObject = Kube<FabricNode>;
/** A RoleAssignment as cached by an informer. */
export type RoleAssignmentObject = Kube<RoleAssignment>;
/** A ServiceWorkload as cached by an informer. */
export type ServiceWorkloadObject = Kube<ServiceWorkload>;

import type { VPNConnection } from "../lib/api/types.generated.js";
/** A VPNConnection as cached by an informer. */
export type VPNConnectionObject = Kube<VPNConnection>;
