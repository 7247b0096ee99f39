-- "Last seen in dump X" moves out of the wide entity tables into narrow `<type>_seen` tables.
--
-- Every monthly dump re-marks every record that is still in it. On the entity table that mark was
-- an UPDATE of a ~2 KB row whose `dump_version` was indexed: never a HOT update, so each one wrote
-- a whole new row (the generated tsvector recomputed) and a new entry in every index, the GIN
-- full-text index included, and the table doubled in size each month until vacuumed. A narrow
-- (id, dump_version) row updated in place costs a fraction of that (docs/records.md).
--
-- `<type>.dump_version` stays and now means the dump the row's content was written from (the
-- guard that stops a late message from an older dump rolling a row back); `<type>_seen` holds the
-- dump the record was last seen in, and the sweep of records gone from a dump walks it by id.
-- fillfactor 50 leaves room on each page for the next month's mark, so it is a HOT update.

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['artists', 'labels', 'masters', 'releases'] LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I (id bigint PRIMARY KEY, dump_version text NOT NULL)'
            ' WITH (fillfactor = 50)', t || '_seen');
        -- every row already stored was last seen in the dump it holds
        EXECUTE format(
            'INSERT INTO %I (id, dump_version) SELECT id, dump_version FROM %I ORDER BY id'
            ' ON CONFLICT (id) DO NOTHING', t || '_seen', t);
        -- nothing reads the entity tables by dump_version any more; the index was only write cost
        EXECUTE format('DROP INDEX IF EXISTS %I', t || '_dump_version_idx');
    END LOOP;
END
$$;
