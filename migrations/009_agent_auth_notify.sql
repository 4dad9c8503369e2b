-- The agent API caches what it checks on every request (agentapi/auth.ts):
-- a node certificate verified once per TLS connection, the identity status
-- and membership per certificate serial, and each cluster's CA. Every
-- change that could turn an accepted certificate into a refused one
-- notifies it at commit, whichever process or code path made it:
--   'node:<name>'     an identity's status changed or it was deleted, or the
--                     node's membership changed or the node was deleted;
--   'cluster:<name>'  a cluster's CA changed or the cluster was deleted.
-- The agent API forgets the entries named and reads them again. While its
-- LISTEN connection is down it does not use the cache at all.

CREATE FUNCTION agent_auth_notify_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Separate statements: a record field is resolved when its statement first runs.
  IF TG_TABLE_NAME = 'nodes' THEN
    PERFORM pg_notify('agent_auth_changed', 'node:' || OLD.name);
  ELSE
    PERFORM pg_notify('agent_auth_changed', 'node:' || OLD.node);
    IF TG_OP = 'UPDATE' AND NEW.node IS DISTINCT FROM OLD.node THEN
      PERFORM pg_notify('agent_auth_changed', 'node:' || NEW.node);
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER agent_auth_identity_changed AFTER UPDATE OF status, node, serial, public_key_fingerprint ON node_identities
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.node IS DISTINCT FROM NEW.node
                     OR OLD.serial IS DISTINCT FROM NEW.serial OR OLD.public_key_fingerprint IS DISTINCT FROM NEW.public_key_fingerprint)
  EXECUTE FUNCTION agent_auth_notify_node();
CREATE TRIGGER agent_auth_identity_deleted AFTER DELETE ON node_identities
  FOR EACH ROW EXECUTE FUNCTION agent_auth_notify_node();
CREATE TRIGGER agent_auth_membership_changed AFTER UPDATE OF membership, name, cluster ON nodes
  FOR EACH ROW WHEN (OLD.membership IS DISTINCT FROM NEW.membership OR OLD.name IS DISTINCT FROM NEW.name OR OLD.cluster IS DISTINCT FROM NEW.cluster)
  EXECUTE FUNCTION agent_auth_notify_node();

CREATE FUNCTION agent_auth_notify_cluster() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('agent_auth_changed', 'cluster:' || OLD.name);
  RETURN NULL;
END $$;

CREATE TRIGGER agent_auth_cluster_changed AFTER UPDATE OF ca_cert_pem, ca_fingerprint, name ON clusters
  FOR EACH ROW WHEN (OLD.ca_cert_pem IS DISTINCT FROM NEW.ca_cert_pem OR OLD.ca_fingerprint IS DISTINCT FROM NEW.ca_fingerprint OR OLD.name IS DISTINCT FROM NEW.name)
  EXECUTE FUNCTION agent_auth_notify_cluster();
CREATE TRIGGER agent_auth_cluster_deleted AFTER DELETE ON clusters
  FOR EACH ROW EXECUTE FUNCTION agent_auth_notify_cluster();

-- A deleted node's heartbeat row goes with it (nothing else would remove
-- it: node_heartbeats has no foreign key, so that a batch of heartbeats
-- never fails because one node was deleted meanwhile).
CREATE FUNCTION node_heartbeats_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM node_heartbeats WHERE node = OLD.name;
  RETURN NULL;
END $$;
CREATE TRIGGER node_heartbeats_forget AFTER DELETE ON nodes
  FOR EACH ROW EXECUTE FUNCTION node_heartbeats_forget();
