-- Ingest bookkeeping: exactly-once batch keys, per-gateway sequence tracking, gaps,
-- dead letters, counter events, and last-seen state.

-- One row per (gateway, seq) committed. A redelivered or re-sent batch finds its key here.
-- Rows at or below gateway_seq.contiguous_seq may be pruned: that watermark still proves delivery.
CREATE TABLE ingest_batches (
    gateway_id  text        NOT NULL,
    seq         bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    n_readings  integer     NOT NULL,
    n_rejected  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (gateway_id, seq)
);

CREATE TABLE gateway_seq (
    gateway_id     text PRIMARY KEY,
    contiguous_seq bigint NOT NULL,   -- every seq <= this has been committed
    max_seq        bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- A span of batch sequence numbers that never arrived (detected by ingest).
CREATE TABLE seq_gaps (
    gateway_id  text        NOT NULL,
    from_seq    bigint      NOT NULL,
    to_seq      bigint      NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    filled_at   timestamptz,            -- set if the missing batches arrive later
    PRIMARY KEY (gateway_id, from_seq)
);

-- Data known lost or missing for a device: reported by a gateway (spool thinning,
-- read failures) or found by ingest.
CREATE TABLE data_gaps (
    gap_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway_id  text        NOT NULL,
    device_id   text,
    metric      text,
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    count       integer     NOT NULL DEFAULT 0,
    reason      text        NOT NULL,
    source      text        NOT NULL CHECK (source IN ('gateway', 'ingest')),
    reported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX data_gaps_gw ON data_gaps (gateway_id, start_ts);

CREATE TABLE dead_letters (
    dead_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text        NOT NULL,
    gateway_id  text,
    seq         bigint,
    field       text,
    reason      text        NOT NULL,
    payload     bytea       NOT NULL
);
CREATE INDEX dead_letters_time ON dead_letters (received_at);

-- Counter steps that were not a simple rise, as flagged by the gateway (see wire CounterEvent).
CREATE TABLE counter_events (
    device_pk  integer          NOT NULL,
    metric_id  smallint         NOT NULL,
    ts         timestamptz      NOT NULL,
    event      text             NOT NULL CHECK (event IN ('reset', 'rollover', 'replaced', 'jump')),
    prev       double precision NOT NULL,
    value      double precision NOT NULL,
    correction double precision NOT NULL,
    PRIMARY KEY (device_pk, metric_id, ts)
);

CREATE TABLE device_status (
    device_pk    integer PRIMARY KEY REFERENCES devices ON DELETE CASCADE,
    last_ts      timestamptz NOT NULL,   -- edge time of the newest reading
    received_at  timestamptz NOT NULL,   -- when ingest committed it
    last_quality smallint    NOT NULL,
    readings     bigint      NOT NULL DEFAULT 0
);

CREATE TABLE gateway_status (
    gateway_id  text PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('online', 'offline')),
    since       timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    version     text,
    devices     jsonb,
    spool_depth integer,
    last_seq    bigint
);
