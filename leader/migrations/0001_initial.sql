-- The leader's database, version 1.
--
-- Every time-series row keeps where it came from: (pioreactor_unit, stream, seq) is the worker
-- outbox's key for the record it was parsed from, so a replayed record is ignored (INSERT OR IGNORE)
-- instead of being stored twice. `timestamp` is the worker's (the science time, UTC ISO-8601 with
-- milliseconds and Z); `received_at` is the leader's clock when the record arrived.
-- Tables and columns keep the reference system's names so its users find their data where they
-- expect it.

CREATE TABLE experiments (
    experiment   TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    ended_at     TEXT,
    origin       TEXT NOT NULL DEFAULT 'user'   -- 'user', 'topology' or 'ingest' (first seen in data)
);

-- Which experiment each unit works for now (one at a time), and the history of assignments.
CREATE TABLE unit_assignments (
    pioreactor_unit TEXT PRIMARY KEY,
    experiment      TEXT NOT NULL REFERENCES experiments(experiment) ON DELETE CASCADE,
    assigned_at     TEXT NOT NULL
);

CREATE TABLE unit_assignments_history (
    pioreactor_unit TEXT NOT NULL,
    experiment      TEXT NOT NULL,
    assigned_at     TEXT NOT NULL,
    unassigned_at   TEXT
);
CREATE INDEX unit_assignments_history_by_experiment ON unit_assignments_history (experiment, pioreactor_unit);

CREATE TABLE unit_labels (
    experiment      TEXT NOT NULL REFERENCES experiments(experiment) ON DELETE CASCADE,
    pioreactor_unit TEXT NOT NULL,
    label           TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (experiment, pioreactor_unit),
    UNIQUE (experiment, label)
);

-- Ingest bookkeeping: the highest contiguous seq stored per (unit, stream); published back to the
-- unit as its acknowledgement. Written in the same transaction as the rows it covers.
-- `dropped`: the unit's count of records its outbox bound dropped from this stream, as of the last
-- time the watermark moved (tells a gap dropped at the bound from an outbox that was replaced).
CREATE TABLE ingest_watermarks (
    pioreactor_unit TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    dropped         INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (pioreactor_unit, stream)
);

-- Records a unit could not deliver (its outbox bound dropped them, or its outbox was replaced):
-- the honest account of what is missing, never silent.
CREATE TABLE ingest_gaps (
    pioreactor_unit TEXT NOT NULL,
    stream          TEXT NOT NULL,
    first_seq       INTEGER NOT NULL,
    last_seq        INTEGER NOT NULL,
    recorded_at     TEXT NOT NULL,
    reason          TEXT NOT NULL
);

-- Time series. Each has experiment, pioreactor_unit, timestamp, received_at, stream, seq.
CREATE TABLE od_readings (
    experiment       TEXT NOT NULL,
    pioreactor_unit  TEXT NOT NULL,
    timestamp        TEXT NOT NULL,
    od_reading       REAL NOT NULL,
    angle            INTEGER,
    channel          INTEGER NOT NULL,
    ir_led_intensity REAL,
    calibrated       INTEGER NOT NULL DEFAULT 0,
    received_at      TEXT NOT NULL,
    stream           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq, channel)
);
CREATE INDEX od_readings_by_time ON od_readings (experiment, pioreactor_unit, timestamp);

CREATE TABLE raw_od_readings (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    od_reading      REAL NOT NULL,
    angle           INTEGER,
    channel         INTEGER NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq, channel)
);
CREATE INDEX raw_od_readings_by_time ON raw_od_readings (experiment, pioreactor_unit, timestamp);

CREATE TABLE od_readings_filtered (
    experiment            TEXT NOT NULL,
    pioreactor_unit       TEXT NOT NULL,
    timestamp             TEXT NOT NULL,
    normalized_od_reading REAL NOT NULL,
    received_at           TEXT NOT NULL,
    stream                TEXT NOT NULL,
    seq                   INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX od_readings_filtered_by_time ON od_readings_filtered (experiment, pioreactor_unit, timestamp);

CREATE TABLE growth_rates (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    rate            REAL NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX growth_rates_by_time ON growth_rates (experiment, pioreactor_unit, timestamp);

CREATE TABLE temperature_readings (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    temperature_c   REAL NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX temperature_readings_by_time ON temperature_readings (experiment, pioreactor_unit, timestamp);

CREATE TABLE stirring_rates (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    measured_rpm    REAL NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX stirring_rates_by_time ON stirring_rates (experiment, pioreactor_unit, timestamp);

CREATE TABLE dosing_events (
    experiment       TEXT NOT NULL,
    pioreactor_unit  TEXT NOT NULL,
    timestamp        TEXT NOT NULL,
    event            TEXT NOT NULL,
    volume_change_ml REAL NOT NULL,
    source_of_event  TEXT,
    received_at      TEXT NOT NULL,
    stream           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX dosing_events_by_time ON dosing_events (experiment, pioreactor_unit, timestamp);

CREATE TABLE led_change_events (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    intensity       REAL NOT NULL,
    source_of_event TEXT,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq, channel)
);
CREATE INDEX led_change_events_by_time ON led_change_events (experiment, pioreactor_unit, timestamp);

CREATE TABLE liquid_volumes (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    liquid_volume   REAL NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX liquid_volumes_by_time ON liquid_volumes (experiment, pioreactor_unit, timestamp);

CREATE TABLE alt_media_fractions (
    experiment         TEXT NOT NULL,
    pioreactor_unit    TEXT NOT NULL,
    timestamp          TEXT NOT NULL,
    alt_media_fraction REAL NOT NULL,
    received_at        TEXT NOT NULL,
    stream             TEXT NOT NULL,
    seq                INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX alt_media_fractions_by_time ON alt_media_fractions (experiment, pioreactor_unit, timestamp);

-- One row per automation run's event (`<automation job>/latest_event`).
CREATE TABLE automation_events (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    job_name        TEXT NOT NULL,   -- dosing_automation, temperature_automation, led_automation
    event_name      TEXT NOT NULL,
    message         TEXT,
    data            TEXT,            -- JSON
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX automation_events_by_time ON automation_events (experiment, pioreactor_unit, timestamp);

-- Every published setting value and job state change (the settings history), including which
-- automation ran with which parameters.
CREATE TABLE settings_history (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    job_name        TEXT NOT NULL,
    setting         TEXT NOT NULL,
    value           TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX settings_history_by_time ON settings_history (experiment, pioreactor_unit, timestamp);
CREATE INDEX settings_history_by_job ON settings_history (experiment, pioreactor_unit, job_name, setting);

CREATE TABLE logs (
    experiment      TEXT NOT NULL,
    pioreactor_unit TEXT NOT NULL,
    timestamp       TEXT NOT NULL,
    message         TEXT NOT NULL,
    source          TEXT NOT NULL,
    level           TEXT NOT NULL,
    task            TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    UNIQUE (pioreactor_unit, stream, seq)
);
CREATE INDEX logs_by_time ON logs (experiment, pioreactor_unit, timestamp);
CREATE INDEX logs_by_level ON logs (experiment, level, timestamp);
