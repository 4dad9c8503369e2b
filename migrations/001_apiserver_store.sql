-- Storage of the kube-compatible API server.
--
-- Every write takes the single row of api_revision FOR UPDATE (via UPDATE) to
-- draw the next resourceVersion, so commits happen in resourceVersion order:
-- a watcher that has seen revision N has seen every committed write <= N.

CREATE TABLE api_revision (
  id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
  rv bigint NOT NULL,
  -- Oldest revision from which a watch can still be resumed; older → 410 Gone.
  compacted_rv bigint NOT NULL DEFAULT 0
);
INSERT INTO api_revision (id, rv) VALUES (1, 1);

CREATE TABLE api_objects (
  api_group  text NOT NULL,      -- '' for the core group
  resource   text NOT NULL,      -- plural, e.g. fabricclusters
  namespace  text NOT NULL DEFAULT '',
  name       text NOT NULL,
  uid        uuid NOT NULL UNIQUE,
  rv         bigint NOT NULL,
  data       jsonb NOT NULL,
  PRIMARY KEY (api_group, resource, namespace, name)
);
CREATE INDEX api_objects_labels ON api_objects USING gin ((data -> 'metadata' -> 'labels') jsonb_path_ops);

-- The retained history that watches resume from.
CREATE TABLE api_events (
  rv         bigint PRIMARY KEY,
  api_group  text NOT NULL,
  resource   text NOT NULL,
  namespace  text NOT NULL DEFAULT '',
  name       text NOT NULL,
  type       text NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),
  data       jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_events_resource ON api_events (api_group, resource, rv);
