-- The mesh peer directory (lib/state/mesh.ts, docs/mesh.md).

-- What each agent last reported about its mesh reachability (heartbeats).
-- Written only when something changed; load is kept in 0.1 steps and never
-- reaches a snapshot (agents measure each other directly).
CREATE TABLE mesh_endpoints (
  node           text PRIMARY KEY REFERENCES nodes (name) ON DELETE CASCADE,
  cluster        text NOT NULL,
  endpoints      text[] NOT NULL,            -- host:port, [v6]:port; preferred first
  reachable      boolean NOT NULL,           -- directly reachable from other nodes
  relay_capable  boolean NOT NULL,
  load_bucket    smallint NOT NULL CHECK (load_bucket BETWEEN 0 AND 10),
  changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mesh_endpoints_cluster ON mesh_endpoints (cluster);

-- FabricNode facts the directory needs (projected by controllers/mesh):
-- node class and failure domain labels.
CREATE TABLE mesh_node_facts (
  node        text PRIMARY KEY,
  cluster     text NOT NULL,
  node_class  text NOT NULL CHECK (node_class IN ('thin', 'standard', 'relay')),
  region      text NOT NULL DEFAULT '',
  zone        text NOT NULL DEFAULT '',
  changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mesh_node_facts_cluster ON mesh_node_facts (cluster);

-- The candidate set last put in each node's snapshot: the reverse index that
-- lets an endpoint change re-sign only the snapshots listing that node
-- (`candidates @> ARRAY[node]` through the GIN index).
CREATE TABLE mesh_candidate_sets (
  node        text PRIMARY KEY,
  cluster     text NOT NULL,
  candidates  text[] NOT NULL
);
CREATE INDEX mesh_candidate_sets_listed ON mesh_candidate_sets USING gin (candidates);
