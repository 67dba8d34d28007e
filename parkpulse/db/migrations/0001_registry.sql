-- Registry: parks, clusters, firms, workshops, gateways, devices, metrics.
CREATE TABLE store_info (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE parks (
    park_id   text PRIMARY KEY CHECK (park_id ~ '^[a-z0-9][a-z0-9-]*$'),
    name      text NOT NULL,
    name_en   text,
    province  text,
    city      text,
    timezone  text NOT NULL DEFAULT 'Asia/Shanghai',
    land_mu   numeric CHECK (land_mu IS NULL OR land_mu >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clusters (
    cluster_id text PRIMARY KEY CHECK (cluster_id ~ '^[a-z0-9][a-z0-9-]*$'),
    park_id    text NOT NULL REFERENCES parks ON DELETE CASCADE,
    name       text NOT NULL,
    name_en    text,
    industry   text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE firms (
    firm_id     text PRIMARY KEY CHECK (firm_id ~ '^[a-z0-9][a-z0-9-]*$'),
    park_id     text NOT NULL REFERENCES parks ON DELETE CASCADE,
    cluster_id  text REFERENCES clusters ON DELETE SET NULL,
    name        text NOT NULL,
    name_en     text,
    credit_code text,               -- 统一社会信用代码
    land_mu     numeric NOT NULL CHECK (land_mu >= 0),
    industry    text,
    size_class  text NOT NULL DEFAULT 'above_scale' CHECK (size_class IN ('above_scale', 'below_scale')),
    production_start date,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX firms_park ON firms (park_id);

CREATE TABLE workshops (
    workshop_id text PRIMARY KEY CHECK (workshop_id ~ '^[a-z0-9][a-z0-9-]*$'),
    firm_id     text NOT NULL REFERENCES firms ON DELETE CASCADE,
    name        text NOT NULL,
    name_en     text,
    smart_declared boolean NOT NULL DEFAULT false,  -- firm declares it a 智能车间 candidate
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateways (
    gateway_id  text PRIMARY KEY CHECK (gateway_id ~ '^[a-z0-9][a-z0-9-]*$'),
    firm_id     text NOT NULL REFERENCES firms ON DELETE CASCADE,
    name        text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    device_pk   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_id  text NOT NULL REFERENCES gateways ON DELETE CASCADE,
    device_id   text NOT NULL,
    workshop_id text REFERENCES workshops ON DELETE SET NULL,
    name        text,
    kind        text NOT NULL CHECK (kind IN ('meter', 'line', 'cems', 'sensor')),
    profile     text,
    meter_level smallint CHECK (meter_level BETWEEN 1 AND 3), -- 1 firm boundary, 2 workshop, 3 equipment
    carrier     text,
    measures    text,
    source_type text,              -- CEMS: gas_boiler, oil_boiler, coal_boiler, ...
    poll_interval_s real CHECK (poll_interval_s IS NULL OR poll_interval_s > 0),
    rated_power_kw real,
    enabled     boolean NOT NULL DEFAULT true,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_id, device_id)
);

CREATE TABLE metrics (
    metric_id   smallint PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    unit        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('counter', 'gauge', 'state', 'count')),
    carrier     text,
    direction   text,
    pollutant   text,
    name_zh     text NOT NULL,
    name_en     text NOT NULL,
    min_value   double precision,
    max_value   double precision
);
