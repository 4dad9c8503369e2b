-- Projects the agents' workload status reports (issue 6) into
-- workload_reports. Agents send them through the generic status endpoint
-- (POST /v1/status/workloads, stored in node_status_reports with kind
-- 'workloads'; a report whose version is not above the stored one is not
-- written, so this trigger never sees a stale one). Body:
--   { "workloads": [ { "name", "state", "ready", "reason", "message",
--                      "restartCount", "observedGeneration" }, ... ] }
-- The list is complete: workloads it no longer names lose their row.
-- Malformed items are skipped, never fail the report. The ServiceWorkload
-- controllers are woken with pg_notify('workload_reports', <JSON names>)
-- at commit (controllers/serviceworkload/report-listener.ts).
-- The well-formed items of a report body, one per name.
CREATE FUNCTION workload_report_items(body jsonb)
RETURNS TABLE (name text, state text, ready boolean, reason text, message text, restart_count int, observed_generation bigint)
LANGUAGE sql IMMUTABLE AS $$
  SELECT DISTINCT ON (x->>'name')
         x->>'name',
         x->>'state',
         COALESCE(x->'ready' = 'true'::jsonb, false),
         left(COALESCE(x->>'reason', ''), 128),
         left(COALESCE(x->>'message', ''), 1024),
         CASE WHEN COALESCE(x->>'restartCount', '0') ~ '^[0-9]{1,9}$' THEN COALESCE(x->>'restartCount', '0')::int ELSE 0 END,
         CASE WHEN COALESCE(x->>'observedGeneration', '0') ~ '^[0-9]{1,15}$' THEN COALESCE(x->>'observedGeneration', '0')::bigint ELSE 0 END
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(body->'workloads') = 'array' THEN body->'workloads' ELSE '[]'::jsonb END) AS x
   WHERE jsonb_typeof(x) = 'object'
     AND x->>'name' ~ '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$'
     AND x->>'state' IN ('Starting', 'Running', 'Degraded', 'Stopped', 'Failed', 'Unsupported')
$$;

CREATE FUNCTION project_workload_report() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  names jsonb;
  payload text;
BEGIN
  SELECT COALESCE(jsonb_agg(n), '[]'::jsonb) INTO names FROM (
    SELECT workload AS n FROM workload_reports WHERE node = NEW.node AND workload NOT IN (SELECT i.name FROM workload_report_items(NEW.body) i)
    UNION SELECT i.name FROM workload_report_items(NEW.body) i) s;

  DELETE FROM workload_reports WHERE node = NEW.node AND workload NOT IN (SELECT i.name FROM workload_report_items(NEW.body) i);
  INSERT INTO workload_reports (node, workload, cluster, report_version, state, ready, reason, message, restart_count, observed_generation, reported_at)
  SELECT NEW.node, i.name, NEW.cluster, NEW.version, i.state, i.ready, i.reason, i.message, i.restart_count, i.observed_generation, now()
    FROM workload_report_items(NEW.body) i
  ON CONFLICT (node, workload) DO UPDATE SET cluster = EXCLUDED.cluster, report_version = EXCLUDED.report_version, state = EXCLUDED.state,
    ready = EXCLUDED.ready, reason = EXCLUDED.reason, message = EXCLUDED.message, restart_count = EXCLUDED.restart_count,
    observed_generation = EXCLUDED.observed_generation, reported_at = now();

  payload := names::text;
  IF length(payload) > 7900 THEN payload := '["*"]'; END IF;
  IF payload <> '[]' THEN PERFORM pg_notify('workload_reports', payload); END IF;
  RETURN NULL;
END;
$$;

CREATE TRIGGER node_status_reports_workloads AFTER INSERT OR UPDATE ON node_status_reports
  FOR EACH ROW WHEN (NEW.kind = 'workloads') EXECUTE FUNCTION project_workload_report();
