-- Nodes whose snapshot must be rebuilt (the contract between the controllers
-- that change per-node desired state and the snapshot builder).
--
-- Writers insert (cluster, node) in the same transaction as the change that
-- affects the node's snapshot; the builder deletes the rows it has rebuilt.
-- `node` = '*' marks every node of the cluster (e.g. a cluster-wide policy).
CREATE TABLE snapshot_dirty (
  cluster   text NOT NULL,
  node      text NOT NULL,
  marked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (cluster, node)
);
