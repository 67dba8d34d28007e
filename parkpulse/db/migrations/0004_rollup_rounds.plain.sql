-- Rollups kept complete in bounded rounds (issue 10). Each dirty mark records when it was made,
-- so the rollup lag (how long the oldest unrefreshed mark has waited) can be measured on both
-- paths. pp_refresh_rollups(n) claims at most n distinct 15-minute buckets, newest first, so a
-- huge backfill is worked off over several rounds while live data keeps being refreshed.
-- The functions are in parkpulse/db/views/11_kernel_store.plain.sql.
ALTER TABLE rollup_dirty ADD COLUMN marked_at timestamptz NOT NULL DEFAULT now();
