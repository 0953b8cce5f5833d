-- Snapshots compress with lz4 instead of pglz.
--
-- A flash sale's campaign or inventory snapshot is megabytes of JSON, rewritten as the stream
-- grows, and PostgreSQL compresses it before TOASTing it: with pglz that was 2.4 % of both
-- cores during a 40,000-join hot campaign (`perf`, 2026-11-29), on the path the joins need.
-- lz4 compresses such JSON several times faster at a similar ratio. Existing values keep their
-- compression until rewritten. A server built without lz4 keeps pglz: the engine works the
-- same, only slower to snapshot.
DO $$
BEGIN
    ALTER TABLE aggregate_snapshots ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available in this server: snapshots stay compressed with pglz';
END
$$;
