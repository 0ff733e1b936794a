-- Migration 1 of the event log (DATA/events.db).
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,  -- global, gapless, from 1, commit order
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,     -- 1-based, gapless per stream
    event_type     TEXT    NOT NULL,
    data           TEXT    NOT NULL,     -- JSON
    metadata       TEXT    NOT NULL,     -- JSON object
    recorded_at    INTEGER NOT NULL,     -- unix ms
    UNIQUE (stream_id, stream_version)
);

-- Appends are the only writes.
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
