-- Migration 2 of the host's bookkeeping in a projection database.
ALTER TABLE refract_meta ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;

-- Events the projection gave up on (error policy `dead-letter`, or `skip`).
CREATE TABLE refract_dead_letters (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,
    error          TEXT    NOT NULL,
    plugin_hash    TEXT    NOT NULL,
    attempts       INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL
);
