-- Role assignments and service workloads (issue 6). Written only through
-- lib/state: node_roles and node_workloads by the leader's controllers,
-- fenced by the authority term and audited in the same transaction (with
-- snapshot_dirty marks for the nodes whose snapshot changes);
-- workload_reports from the agents' status reports (runtime facts, not
-- decisions).

-- Roles granted per node: one row per (RoleAssignment, FabricNode) that
-- passed the checks (node Active, capabilities present). Refused nodes have
-- no row; their reasons live in the RoleAssignment status.
CREATE TABLE node_roles (
  assignment    text NOT NULL,              -- RoleAssignment name
  node          text NOT NULL,              -- FabricNode name
  cluster       text NOT NULL,
  role          text NOT NULL,
  organization  text NOT NULL DEFAULT '',   -- '' = the platform
  granted_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (assignment, node)
);
CREATE INDEX node_roles_node ON node_roles (node);
CREATE INDEX node_roles_cluster_role ON node_roles (cluster, role);

-- Desired workloads per node: one row per (ServiceWorkload, FabricNode),
-- `spec` is the node's SnapshotWorkload exactly as it goes into the snapshot
-- (plain configuration only, never a secret value).
CREATE TABLE node_workloads (
  workload      text NOT NULL,              -- ServiceWorkload name
  node          text NOT NULL,
  cluster       text NOT NULL,
  organization  text NOT NULL DEFAULT '',
  generation    bigint NOT NULL,
  spec          jsonb NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (workload, node)
);
CREATE INDEX node_workloads_node ON node_workloads (node);

-- Latest report per (node, workload) from the node's agent, projected from
-- its status report (migrations/008_workload_report_projection.sql);
-- `report_version` is the version of that report (stale ones never land).
CREATE TABLE workload_reports (
  node                 text NOT NULL,
  workload             text NOT NULL,
  cluster              text NOT NULL,
  report_version       bigint NOT NULL,
  state                text NOT NULL CHECK (state IN ('Starting', 'Running', 'Degraded', 'Stopped', 'Failed', 'Unsupported')),
  ready                boolean NOT NULL,
  reason               text NOT NULL DEFAULT '',
  message              text NOT NULL DEFAULT '',
  restart_count        int NOT NULL DEFAULT 0,
  observed_generation  bigint NOT NULL DEFAULT 0,
  reported_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node, workload)
);
CREATE INDEX workload_reports_workload ON workload_reports (workload);
