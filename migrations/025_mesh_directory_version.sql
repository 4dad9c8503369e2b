-- A version of the mesh peer directory (lib/state/mesh.ts): one counter,
-- bumped once by every transaction that changes what a directory read
-- returns (a member's node row, roles, active identity, facts, endpoints, or
-- a cluster's spec). A reader that kept a prepared directory asks for this
-- one value instead of recomputing a digest over the directory join.
--
-- The bump runs at commit (deferred constraint triggers), so the counter's
-- row lock is the last lock a writer takes and is held only while it
-- commits: writers never wait on it while holding other row locks they took
-- later, so it adds no deadlock. One counter for all clusters: a change in
-- one cluster also makes readers of the others read again (rare: these
-- tables change on enrolment, role, renewal and endpoint changes).
CREATE TABLE mesh_directory_version (
  only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  version   bigint NOT NULL
);
INSERT INTO mesh_directory_version (version) VALUES (1);

-- Once per transaction: later calls in the same transaction return at once.
CREATE FUNCTION mesh_directory_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('fabric.mesh_directory_bumped', true) IS DISTINCT FROM txid_current()::text THEN
    UPDATE mesh_directory_version SET version = version + 1;
    PERFORM set_config('fabric.mesh_directory_bumped', txid_current()::text, true);
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER mesh_directory_nodes AFTER INSERT OR DELETE ON nodes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mesh_directory_bump();
CREATE CONSTRAINT TRIGGER mesh_directory_nodes_update AFTER UPDATE ON nodes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN ((OLD.name, OLD.cluster, OLD.membership) IS DISTINCT FROM (NEW.name, NEW.cluster, NEW.membership))
  EXECUTE FUNCTION mesh_directory_bump();

CREATE CONSTRAINT TRIGGER mesh_directory_roles AFTER INSERT OR UPDATE OR DELETE ON node_roles
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mesh_directory_bump();

CREATE CONSTRAINT TRIGGER mesh_directory_identities AFTER INSERT OR DELETE ON node_identities
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mesh_directory_bump();
CREATE CONSTRAINT TRIGGER mesh_directory_identities_update AFTER UPDATE ON node_identities
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN ((OLD.node, OLD.status, OLD.public_key_fingerprint) IS DISTINCT FROM (NEW.node, NEW.status, NEW.public_key_fingerprint))
  EXECUTE FUNCTION mesh_directory_bump();

CREATE CONSTRAINT TRIGGER mesh_directory_facts AFTER INSERT OR UPDATE OR DELETE ON mesh_node_facts
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mesh_directory_bump();

-- A load change alone is written but decides nothing.
CREATE CONSTRAINT TRIGGER mesh_directory_endpoints AFTER INSERT OR DELETE ON mesh_endpoints
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mesh_directory_bump();
CREATE CONSTRAINT TRIGGER mesh_directory_endpoints_update AFTER UPDATE ON mesh_endpoints
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
  WHEN ((OLD.node, OLD.cluster, OLD.endpoints, OLD.reachable, OLD.relay_capable) IS DISTINCT FROM (NEW.node, NEW.cluster, NEW.endpoints, NEW.reachable, NEW.relay_capable))
  EXECUTE FUNCTION mesh_directory_bump();

CREATE CONSTRAINT TRIGGER mesh_directory_clusters AFTER INSERT OR DELETE ON clusters
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION mesh_directory_bump();
CREATE CONSTRAINT TRIGGER mesh_directory_clusters_update AFTER UPDATE ON clusters
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (OLD.spec IS DISTINCT FROM NEW.spec)
  EXECUTE FUNCTION mesh_directory_bump();
