-- Kernel (parkpulse/db/), TimescaleDB path: the same entry points as the plain path
-- (continuous aggregates and their policies are in migration 0002, rollup_dirty in 0004).
-- Idempotent: re-applied by every `parkpulse db migrate` (README.md in this folder).

-- Partitions are managed by TimescaleDB; kept so writers call one function on both paths.
CREATE OR REPLACE FUNCTION pp_ensure_partition(at timestamptz) RETURNS text
LANGUAGE sql AS $$ SELECT 'readings'::text $$;

-- Rollups kept complete (issue 10). A real-time continuous aggregate shows raw
-- data only above its materialization watermark: whatever lands below it (a history import, a
-- spool replay after an outage, a resend, a lagging meter clock) is invisible until the range is
-- refreshed. So writers keep the dirty-bucket log here too, and parkpulse.db.refresh_rollups()
-- refreshes exactly the touched ranges with refresh_continuous_aggregate, finest first. That
-- procedure cannot run inside a function or transaction, so the SQL entry point below refreshes
-- no aggregate and returns 0; the policies stay as a safety net. What it does do (issue 16):
-- bring counter_daily up to date, for the days that have dirty marks, with what the real-time
-- aggregates show now. The marks stay for parkpulse.db.refresh_rollups(), which recomputes those
-- days again after refreshing the aggregates (data below the watermark shows only then).
CREATE OR REPLACE FUNCTION pp_refresh_rollups(max_buckets integer) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pp_refresh_counter_daily(
        ARRAY(SELECT DISTINCT date_trunc('day', bucket, '{{timezone}}') FROM rollup_dirty));
    RETURN 0;
END $$;

CREATE OR REPLACE FUNCTION pp_refresh_rollups() RETURNS integer
LANGUAGE sql AS $$ SELECT pp_refresh_rollups(NULL) $$;
