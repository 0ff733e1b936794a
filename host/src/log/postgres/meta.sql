-- Migration 2 of the PostgreSQL log: its identity (as the SQLite log's
-- `log_meta`; `copy-log` carries it over), and leases, so that exactly one
-- node runs what must run once (the outbox's publisher).
CREATE TABLE refract.meta (
    id     integer PRIMARY KEY CHECK (id = 1),
    log_id text    NOT NULL
);
INSERT INTO refract.meta (id, log_id) VALUES (1, md5(random()::text || clock_timestamp()::text));

CREATE TABLE refract.leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
