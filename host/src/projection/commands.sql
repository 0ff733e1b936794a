-- Migration 3 of the host's bookkeeping in a projection database: for a
-- reactor, the commands it decided, waiting to be sent (written in the
-- same transaction as the batch that decided them, removed once sent), and
-- those that were refused.
CREATE TABLE refract_commands (
    position     INTEGER NOT NULL,  -- the event it answers
    idx          INTEGER NOT NULL,  -- its index among that event's commands
    handler      TEXT    NOT NULL,
    command_type TEXT    NOT NULL,
    stream_id    TEXT    NOT NULL,
    data         TEXT    NOT NULL,  -- JSON
    metadata     TEXT    NOT NULL,  -- JSON object
    PRIMARY KEY (position, idx)
);

CREATE TABLE refract_refused_commands (
    position     INTEGER NOT NULL,
    idx          INTEGER NOT NULL,
    handler      TEXT    NOT NULL,
    command_type TEXT    NOT NULL,
    stream_id    TEXT    NOT NULL,
    code         TEXT    NOT NULL,  -- the handler's rejection code, or `failed`
    message      TEXT    NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (position, idx)
);

-- A reactor sends commands only for events after this position: the
-- history before it (all of it, when a reactor is first loaded on a log
-- that has one; what the previous version already answered, for a
-- rebuild) builds its state without sending anything again.
ALTER TABLE refract_meta ADD COLUMN commands_after INTEGER NOT NULL DEFAULT 0;
