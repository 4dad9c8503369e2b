-- One round trip to start an audit append (lib/audit/chain.ts): take the
-- chain's advisory transaction lock, then read the committed tail and draw
-- n ids. In a plpgsql function each statement takes a fresh snapshot (READ
-- COMMITTED), so the tail is read after the lock is held and sees the
-- previous appender's commit; a single plain SELECT would take its snapshot
-- before waiting for the lock and could fork the chain.
CREATE FUNCTION audit_append_head(lock_key bigint, n int)
RETURNS TABLE (tail_hash text, ids bigint[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(lock_key);
  SELECT a.hash INTO tail_hash FROM audit_events a ORDER BY a.id DESC LIMIT 1;
  ids := ARRAY(SELECT nextval('audit_events_id_seq') FROM generate_series(1, n));
  RETURN NEXT;
END;
$$;
