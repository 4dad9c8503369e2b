/**
 * The state layer: the one place that reads and writes the controllers'
 * tables. Decisions run fenced by the authority term, each with its audit row.
 */
export { ClusterStore, clusterKeyAad, type ClusterKeyRow, type ClusterRow } from "./clusters.js";
export { decide, type AuditEntry, type Fence } from "./fenced.js";
export { NodeGroupStore, sameNodeGroupRow, type NodeGroupRow } from "./node-groups.js";
export { EnrollmentStore, type EnrollmentInput, type EnrollmentOutcome, type RefusalCode } from "./enrollment.js";
export { TokenStore, type NewToken, type TokenRow } from "./join-tokens.js";
export { NodeStore, type ApproveOutcome, type IdentityRow, type NewIdentity, type NodeRow, type RequestRow } from "./nodes.js";
export { RoleStore, snapshotRolesOf, snapshotRolesOfMany, type GrantChange, type NodeRoleRow, type RoleCandidate, type RoleCoverageRow } from "./roles.js";
export { WorkloadStore, snapshotWorkloadsOf, snapshotWorkloadsOfMany, type DesiredChange, type DesiredWorkloadRow, type WorkloadReportRow } from "./workloads.js";
