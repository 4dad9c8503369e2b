-- Group commit for API writes: one call applies a batch of object writes in
-- one transaction, so concurrent requests share one revision-lock hold, one
-- WAL flush and one NOTIFY instead of paying for each (apiserver/store.ts).
--
-- ops is a JSON array; each element is
--   {"op": "create"|"update"|"delete", "g": group, "r": resource, "ns": namespace,
--    "n": name, "uid": uuid (create), "rv": expected resourceVersion (update,
--    delete), "d": the object (for delete: the object as it was)}.
-- Every element is applied on its own terms: a create of an existing object
-- or an update/delete whose expected revision is stale writes nothing and
-- answers rv NULL (the caller re-reads and decides again); the others draw
-- consecutive revisions in array order. Revisions stay in commit order: the
-- revision row is locked first and held until commit, as for single writes.
CREATE FUNCTION api_write_batch(ops jsonb)
RETURNS TABLE (idx int, new_rv bigint)
LANGUAGE plpgsql AS $$
DECLARE
  cur bigint;
  start_rv bigint;
  op jsonb;
  i int := 0;
  obj jsonb;
BEGIN
  SELECT r.rv INTO cur FROM api_revision r WHERE r.id = 1 FOR UPDATE;
  start_rv := cur;
  FOR op IN SELECT e FROM jsonb_array_elements(ops) AS e LOOP
    IF op->>'op' = 'create' THEN
      INSERT INTO api_objects (api_group, resource, namespace, name, uid, rv, data)
      VALUES (op->>'g', op->>'r', op->>'ns', op->>'n', (op->>'uid')::uuid, cur + 1,
              jsonb_set(op->'d', '{metadata,resourceVersion}', to_jsonb((cur + 1)::text)))
      ON CONFLICT DO NOTHING
      RETURNING data INTO obj;
    ELSIF op->>'op' = 'update' THEN
      UPDATE api_objects o SET rv = cur + 1,
             data = jsonb_set(op->'d', '{metadata,resourceVersion}', to_jsonb((cur + 1)::text))
       WHERE o.api_group = op->>'g' AND o.resource = op->>'r' AND o.namespace = op->>'ns'
         AND o.name = op->>'n' AND o.rv = (op->>'rv')::bigint
      RETURNING o.data INTO obj;
    ELSIF op->>'op' = 'delete' THEN
      DELETE FROM api_objects o
       WHERE o.api_group = op->>'g' AND o.resource = op->>'r' AND o.namespace = op->>'ns'
         AND o.name = op->>'n' AND o.rv = (op->>'rv')::bigint;
      obj := CASE WHEN FOUND THEN jsonb_set(op->'d', '{metadata,resourceVersion}', to_jsonb((cur + 1)::text)) END;
    ELSE
      RAISE EXCEPTION 'api_write_batch: unknown op %', op->>'op';
    END IF;
    IF obj IS NOT NULL THEN
      cur := cur + 1;
      INSERT INTO api_events (rv, api_group, resource, namespace, name, type, data)
      VALUES (cur, op->>'g', op->>'r', op->>'ns', op->>'n',
              CASE op->>'op' WHEN 'create' THEN 'ADDED' WHEN 'update' THEN 'MODIFIED' ELSE 'DELETED' END,
              obj);
      idx := i; new_rv := cur;
    ELSE
      idx := i; new_rv := NULL;
    END IF;
    RETURN NEXT;
    i := i + 1;
  END LOOP;
  IF cur > start_rv THEN
    UPDATE api_revision SET rv = cur WHERE id = 1;
    PERFORM pg_notify('fabric_api_events', cur::text);
  END IF;
END;
$$;
