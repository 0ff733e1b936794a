-- Migration 1 of the host's bookkeeping in a projection database
-- (DATA/projections/<name>.db). Plugins cannot see or touch refract_* tables.
CREATE TABLE refract_meta (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    plugin_name        TEXT    NOT NULL,
    plugin_version     TEXT    NOT NULL,
    plugin_hash        TEXT    NOT NULL,  -- SHA-256 of the .wasm that built this file
    position           INTEGER NOT NULL,  -- checkpoint: last log position applied
    migrations_applied INTEGER NOT NULL,  -- how many of the plugin's migrations ran
    created_at         INTEGER NOT NULL
);
