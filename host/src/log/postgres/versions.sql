-- Migration 3 of the PostgreSQL log: the version of its type's schema
-- each event was written with (1 when the type had none).
ALTER TABLE refract.events ADD COLUMN schema_version integer NOT NULL DEFAULT 1;
