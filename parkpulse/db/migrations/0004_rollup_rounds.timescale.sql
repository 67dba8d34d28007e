-- Rollups kept complete on TimescaleDB (issue 10). A real-time continuous aggregate shows raw
-- data only above its materialization watermark: whatever lands below it (a history import, a
-- spool replay after an outage, a resend, a lagging meter clock) is invisible until the range is
-- refreshed. So writers keep the dirty-bucket log here too, and parkpulse.db.refresh_rollups()
-- refreshes exactly the touched ranges with refresh_continuous_aggregate, finest first. That
-- procedure cannot run inside a function or transaction, so the SQL entry point
-- (parkpulse/db/views/11_kernel_store.timescale.sql) is a no-op; the policies stay as a safety net.
ALTER TABLE rollup_dirty ADD COLUMN marked_at timestamptz NOT NULL DEFAULT now();
