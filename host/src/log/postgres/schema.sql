-- Migration 1 of the PostgreSQL log (schema `refract`). The same columns
-- and guarantees as the SQLite log.
CREATE TABLE refract.events (
    position       bigint PRIMARY KEY,   -- global, gapless, from 1, commit order
    stream_id      text   NOT NULL,
    stream_version bigint NOT NULL,      -- 1-based, gapless per stream
    event_type     text   NOT NULL,
    data           text   NOT NULL,      -- JSON, the bytes appended
    metadata       text   NOT NULL,      -- JSON object, the bytes appended
    recorded_at    bigint NOT NULL,      -- unix ms
    CONSTRAINT events_stream_version UNIQUE (stream_id, stream_version)
);

-- The head of the log: the last position assigned. Every append
-- transaction locks this row first and moves it last, so positions are
-- assigned one transaction at a time and become visible in their order.
CREATE TABLE refract.head (
    id       integer PRIMARY KEY CHECK (id = 1),
    position bigint  NOT NULL
);
INSERT INTO refract.head (id, position) VALUES (1, 0);

-- Outcomes of commands sent with an idempotency key, written in the same
-- transaction as their events.
CREATE TABLE refract.idempotency_keys (
    scope          text   NOT NULL,  -- the command handler
    key            text   NOT NULL,
    command_id     text   NOT NULL,
    stream_id      text   NOT NULL,
    stream_version bigint NOT NULL,
    first_position bigint NOT NULL,  -- > last_position when no events were appended
    last_position  bigint NOT NULL,
    recorded_at    bigint NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Appends are the only writes.
CREATE FUNCTION refract.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON refract.events
    FOR EACH ROW EXECUTE FUNCTION refract.append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON refract.events
    FOR EACH STATEMENT EXECUTE FUNCTION refract.append_only();
