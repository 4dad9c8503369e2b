-- The snapshot builder reads the dirty index oldest first, a batch at a time
-- (lib/state/snapshots.ts readDirty). A cluster-wide mark over a large
-- cluster is expanded into one mark per node (100,000 rows), so without an
-- index every batch sorted the whole table again.
CREATE INDEX snapshot_dirty_marked_at ON snapshot_dirty (marked_at);
