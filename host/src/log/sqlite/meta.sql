-- Migration 3 of the event log: its identity, named in what leaves it
-- (the outbox's messages), so a copy of the log elsewhere is recognized as
-- the same log.
CREATE TABLE log_meta (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    log_id TEXT    NOT NULL
);
INSERT INTO log_meta (id, log_id) VALUES (1, lower(hex(randomblob(16))));
