-- Migration 4 of the event log: the version of its type's schema each
-- event was written with (1 when the type had none).
ALTER TABLE events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1;
