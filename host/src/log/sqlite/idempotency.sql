-- Migration 2 of the event log: outcomes of commands sent with an
-- idempotency key, written in the same transaction as their events.
CREATE TABLE idempotency_keys (
    scope          TEXT    NOT NULL,  -- the command handler
    key            TEXT    NOT NULL,
    command_id     TEXT    NOT NULL,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    first_position INTEGER NOT NULL,  -- > last_position when no events were appended
    last_position  INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
