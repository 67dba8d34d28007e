-- Engine bookkeeping on alerts (clear_since: the hysteresis clear timer, kept across restarts)
-- does not count as a change of the alert: updated_at moves only when something else changes.
CREATE OR REPLACE FUNCTION pp_alerts_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o alerts := OLD;
BEGIN
    o.clear_since := NEW.clear_since;
    o.updated_at := NEW.updated_at;
    IF o IS NOT DISTINCT FROM NEW THEN
        RETURN NEW;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
