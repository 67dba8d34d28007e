-- Per-tariff registers (尖/峰/平/谷) of multi-tariff meters (DL/T 645, some Modbus maps) are
-- catalogue counters without a carrier, so they never enter the energy totals; `tariff` names
-- the time-of-use period each one counts, for the cost check against the tariff's own split.
-- Filled by the catalogue sync that runs after every migrate.
ALTER TABLE metrics
    ADD COLUMN IF NOT EXISTS tariff text CHECK (tariff IN ('sharp', 'peak', 'flat', 'valley'));
