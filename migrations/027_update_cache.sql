-- Update-cache nodes (docs/releases.md "Update caches").
--
-- A cache node reports where it serves as status kind `update-cache`
-- (node_status_reports, body { endpoint }); the releaseUpdates snapshot part
-- hands the cluster's caches to the nodes with release assignments, and a
-- cache node's own snapshot names the artifacts it may mirror. Two triggers
-- keep those snapshots current:

-- A cache's reported endpoint changed: rebuild the snapshots of the nodes of
-- its cluster that have release assignments (they carry the cache list).
CREATE FUNCTION update_cache_endpoint_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.body IS NOT DISTINCT FROM NEW.body THEN
    RETURN NULL;
  END IF;
  INSERT INTO snapshot_dirty (cluster, node)
  SELECT DISTINCT a.cluster, a.node FROM rollout_assignments a WHERE a.cluster = NEW.cluster
  ON CONFLICT (cluster, node) DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER update_cache_endpoint_dirty AFTER INSERT OR UPDATE ON node_status_reports
  FOR EACH ROW WHEN (NEW.kind = 'update-cache') EXECUTE FUNCTION update_cache_endpoint_dirty();

-- What nodes may download changed: rebuild the snapshots of the cache nodes
-- of that node's cluster (they carry the list of artifacts to mirror).
CREATE FUNCTION update_cache_artifacts_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed text;
BEGIN
  IF TG_OP = 'DELETE' THEN changed := OLD.node_id; ELSE changed := NEW.node_id; END IF;
  INSERT INTO snapshot_dirty (cluster, node)
  SELECT DISTINCT r.cluster, r.node FROM nodes n JOIN node_roles r ON r.cluster = n.cluster AND r.role = 'update-cache'
   WHERE n.name = changed
  ON CONFLICT (cluster, node) DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER update_cache_artifacts_dirty AFTER INSERT OR DELETE ON node_release_assignments
  FOR EACH ROW EXECUTE FUNCTION update_cache_artifacts_dirty();

-- A node gained or lost the update-cache role, or a cache's active
-- certificate (its pin) changed: rebuild the snapshots of the nodes of its
-- cluster that have release assignments.
CREATE FUNCTION update_cache_fetchers_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF TG_TABLE_NAME = 'node_roles' THEN
    IF r.role <> 'update-cache' THEN RETURN NULL; END IF;
  ELSIF NOT EXISTS (SELECT 1 FROM node_roles x WHERE x.node = r.node AND x.cluster = r.cluster AND x.role = 'update-cache') THEN
    RETURN NULL;
  END IF;
  INSERT INTO snapshot_dirty (cluster, node)
  SELECT DISTINCT a.cluster, a.node FROM rollout_assignments a WHERE a.cluster = r.cluster
  ON CONFLICT (cluster, node) DO NOTHING;
  RETURN NULL;
END $$;
CREATE TRIGGER update_cache_role_dirty AFTER INSERT OR DELETE ON node_roles
  FOR EACH ROW EXECUTE FUNCTION update_cache_fetchers_dirty();
CREATE TRIGGER update_cache_identity_dirty AFTER INSERT OR UPDATE OF status ON node_identities
  FOR EACH ROW EXECUTE FUNCTION update_cache_fetchers_dirty();
