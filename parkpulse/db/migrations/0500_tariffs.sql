-- Costs (costs/): tariffs as synced from costs/data/tariffs.yaml by `parkpulse tariffs sync`,
-- and the firms' tariff assignments (`parkpulse tariffs assign`). Tables only: the cost views
-- live in views/50_costs.sql. Figures are per tariff version; every version carries its source
-- and whether it was checked against the primary text (verified).

CREATE TABLE tariffs (
    tariff_id  text PRIMARY KEY,
    carrier    text NOT NULL,
    name_zh    text NOT NULL,
    name_en    text NOT NULL,
    region     text,
    file       text NOT NULL,
    file_checksum text NOT NULL,
    synced_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tariff_versions (
    tariff_id  text NOT NULL REFERENCES tariffs ON DELETE CASCADE,
    version    text NOT NULL,
    valid_from date NOT NULL,
    valid_to   date,                       -- exclusive; NULL = open
    unit       text NOT NULL,              -- unit of the energy quantity priced (kWh, m3, t …)
    source     text NOT NULL,
    verified   boolean NOT NULL,
    note       text,
    ratio_sharp double precision, ratio_peak double precision, ratio_flat double precision,
    ratio_valley double precision, ratio_source text, ratio_verified boolean,
    PRIMARY KEY (tariff_id, version),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- The period of every 15-minute slot (0 = 00:00-00:15 … 95) of each month, local time.
CREATE TABLE tariff_slots (
    tariff_id text NOT NULL,
    version   text NOT NULL,
    month     smallint NOT NULL CHECK (month BETWEEN 1 AND 12),
    slot      smallint NOT NULL CHECK (slot BETWEEN 0 AND 95),
    period    text NOT NULL CHECK (period IN ('sharp', 'peak', 'flat', 'valley')),
    PRIMARY KEY (tariff_id, version, month, slot),
    FOREIGN KEY (tariff_id, version) REFERENCES tariff_versions ON DELETE CASCADE
);

-- The price of one period (electricity) or of the carrier ('all'), per voltage class ('any' for
-- other carriers), for the months [price_from, price_to). basis says how it was formed.
CREATE TABLE tariff_prices (
    tariff_id     text NOT NULL,
    version       text NOT NULL,
    voltage_class text NOT NULL,
    period        text NOT NULL CHECK (period IN ('sharp', 'peak', 'flat', 'valley', 'all')),
    price_from    date NOT NULL,
    price_to      date,
    price         double precision NOT NULL CHECK (price >= 0),
    price_unit    text NOT NULL,
    basis         text NOT NULL,
    source        text NOT NULL,
    verified      boolean NOT NULL,
    PRIMARY KEY (tariff_id, version, voltage_class, period, price_from),
    FOREIGN KEY (tariff_id, version) REFERENCES tariff_versions ON DELETE CASCADE
);

-- Two-part tariff: demand (需量, per kW of the month's maximum demand) and capacity (容量, per kVA).
CREATE TABLE tariff_two_part (
    tariff_id     text NOT NULL,
    version       text NOT NULL,
    voltage_class text NOT NULL,
    demand_yuan_per_kw_month    double precision CHECK (demand_yuan_per_kw_month >= 0),
    capacity_yuan_per_kva_month double precision CHECK (capacity_yuan_per_kva_month >= 0),
    source        text NOT NULL,
    verified      boolean NOT NULL,
    PRIMARY KEY (tariff_id, version, voltage_class),
    FOREIGN KEY (tariff_id, version) REFERENCES tariff_versions ON DELETE CASCADE
);

-- Parameters of the cost computation from the tariffs file (register check tolerances).
CREATE TABLE cost_params (
    key    text PRIMARY KEY,
    value  double precision NOT NULL,
    source text NOT NULL
);

-- Which tariff a firm pays for a carrier, from valid_from to valid_to (exclusive; NULL = open).
-- Overlaps for the same firm and carrier are refused by `parkpulse tariffs assign` (costs/_assign.py).
CREATE TABLE firm_tariffs (
    assignment_id bigserial PRIMARY KEY,
    firm_id        text NOT NULL REFERENCES firms ON DELETE CASCADE,
    carrier        text NOT NULL,
    tariff_id      text NOT NULL REFERENCES tariffs,
    voltage_class  text,
    capacity_basis text NOT NULL DEFAULT 'none' CHECK (capacity_basis IN ('demand', 'capacity', 'none')),
    transformer_kva double precision CHECK (transformer_kva > 0),
    valid_from     date NOT NULL,
    valid_to       date,
    assigned_at    timestamptz NOT NULL DEFAULT now(),
    note           text,
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    CHECK (capacity_basis <> 'capacity' OR transformer_kva IS NOT NULL)
);
CREATE INDEX firm_tariffs_firm ON firm_tariffs (firm_id, carrier, valid_from);
