-- Release channels and rollouts (controllers/releasechannel, lib/state/rollouts.ts,
-- docs/releases.md "Channels and rollouts").

-- Rollout progress per ReleaseChannel (controllers/releasechannel/plan.ts
-- RolloutState: ring phases, halted version, stable, completed versions,
-- promotion history). Written with the assignments, fenced and audited.
CREATE TABLE release_rollouts (
  channel     text PRIMARY KEY,
  cluster     text NOT NULL,
  component   text NOT NULL,
  state       jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The version each node of a channel is assigned, with what its snapshot
-- carries: the release's signed envelope and the artifact for the node's
-- OS and architecture. Only verified releases are ever written here.
CREATE TABLE rollout_assignments (
  channel       text NOT NULL,
  node          text NOT NULL,
  cluster       text NOT NULL,
  component     text NOT NULL,
  version       text NOT NULL,
  release_name  text NOT NULL,
  artifact      jsonb NOT NULL,               -- { os, arch, length, sha256 }
  envelope      jsonb NOT NULL,
  ring          text NOT NULL DEFAULT '',
  assigned_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel, node)
);
CREATE INDEX rollout_assignments_node ON rollout_assignments (cluster, node);

-- The release trust set of each cluster as it goes into snapshots (the
-- agents verify every envelope against it themselves).
CREATE TABLE rollout_trust (
  cluster  text PRIMARY KEY,
  trust    jsonb NOT NULL
);

-- Agents report their update states through the generic status endpoint
-- (POST /v1/status/updates, node_status_reports kind 'updates'); this wakes
-- the ReleaseChannel controllers of the node's cluster at commit.
CREATE FUNCTION notify_update_report() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('update_reports', NEW.cluster);
  RETURN NULL;
END;
$$;
CREATE TRIGGER node_status_reports_updates AFTER INSERT OR UPDATE ON node_status_reports
  FOR EACH ROW WHEN (NEW.kind = 'updates') EXECUTE FUNCTION notify_update_report();
