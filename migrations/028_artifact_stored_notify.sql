-- Wakes the Release controller when the version store indexes an artifact
-- (controllers/release/setup.ts): a release that waits in ArtifactMissing
-- is verified again as soon as its artifact's row commits, instead of at
-- its next periodic recheck. The payload is the artifact's sha256; the
-- notification is delivered at commit, so a listener that reads on it sees
-- the row.
CREATE FUNCTION artifact_stored_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('artifact_stored', NEW.sha256);
  RETURN NULL;
END;
$$;

CREATE TRIGGER artifact_stored_notify AFTER INSERT ON artifacts
  FOR EACH ROW EXECUTE FUNCTION artifact_stored_notify();
