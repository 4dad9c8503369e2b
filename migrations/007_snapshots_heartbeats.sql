-- Signed node snapshots, heartbeats and agent status reports (issue 5).
-- Written only through lib/state/snapshots.ts and lib/state/heartbeats.ts.

-- Wakes the snapshot builder when a writer marks nodes dirty (delivered at
-- the writer's commit; the builder also polls, so a lost notification only
-- delays a rebuild).
CREATE FUNCTION snapshot_dirty_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('snapshot_dirty', '');
  RETURN NULL;
END $$;
CREATE TRIGGER snapshot_dirty_notify AFTER INSERT OR UPDATE ON snapshot_dirty
  FOR EACH STATEMENT EXECUTE FUNCTION snapshot_dirty_notify();

-- Every write of node_snapshots draws a new change_seq, so the agent API can
-- ask "what changed since seq N" (one indexed range scan) instead of
-- comparing every node.
CREATE SEQUENCE node_snapshots_change_seq;

-- The current signed snapshot of each node membership. `serial` only grows
-- (per node, across authority terms). `payload_hash` is sha256 of the
-- canonical payload: an unchanged payload under a fresh snapshot is not
-- re-signed and keeps its serial. `hash` is sha256 of `bytes` (what the
-- agent reports back in its heartbeat).
CREATE TABLE node_snapshots (
  cluster      text NOT NULL,
  node         text NOT NULL,
  serial       bigint NOT NULL CHECK (serial > 0),
  term         bigint NOT NULL,
  payload_hash text NOT NULL,
  hash         text NOT NULL,
  bytes        bytea NOT NULL,
  issued_at    timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL,
  refresh_at   timestamptz NOT NULL,          -- issued_at + half the lifetime: re-issued from then on
  change_seq   bigint NOT NULL DEFAULT nextval('node_snapshots_change_seq'),
  PRIMARY KEY (node)
);
CREATE INDEX node_snapshots_change_seq_idx ON node_snapshots (change_seq);
CREATE INDEX node_snapshots_cluster ON node_snapshots (cluster);
CREATE INDEX node_snapshots_refresh ON node_snapshots (refresh_at);

-- Per node, the highest serial ever issued: survives deletion of the
-- snapshot row (a node disabled, revoked and re-created under the same name
-- never sees a serial go backwards).
CREATE TABLE node_snapshot_serials (
  node   text PRIMARY KEY,
  serial bigint NOT NULL
);

-- Latest heartbeat per node (like a Kubernetes Lease: the liveness record
-- lives here, not in the FabricNode object). Written in batches by the agent
-- API; `seq` is the agent's own counter, so a delayed older heartbeat never
-- overwrites a newer one.
CREATE TABLE node_heartbeats (
  node            text PRIMARY KEY,
  cluster         text NOT NULL,
  received_at     timestamptz NOT NULL,
  seq             bigint NOT NULL,
  agent_version   text NOT NULL,
  capabilities    text[] NOT NULL DEFAULT '{}',
  facts           jsonb NOT NULL DEFAULT '{}',
  health          text NOT NULL,
  health_message  text NOT NULL DEFAULT '',
  snapshot_serial bigint,
  snapshot_hash   text,
  snapshot_applied_at timestamptz
);
CREATE INDEX node_heartbeats_received ON node_heartbeats (received_at);

-- Health the control plane last published per node (the audited value).
CREATE TABLE node_health (
  node       text PRIMARY KEY,
  cluster    text NOT NULL,
  health     text NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now()
);

-- Generic agent status reports (later issues: workloads, VPN, updates). One
-- row per node and kind; `version` is the agent's counter: a stale report
-- never overwrites a newer one.
CREATE TABLE node_status_reports (
  node        text NOT NULL,
  kind        text NOT NULL,
  cluster     text NOT NULL,
  version     bigint NOT NULL,
  body        jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node, kind)
);
