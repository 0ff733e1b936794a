//! End-to-end tests: a real refract server on a loopback port, real `.wasm`
//! plugins built from `plugins/` and `tests/plugins/`, real SQLite files,
//! real HTTP. One module per risk.

mod access_control;
mod bad_input;
mod build_churn;
mod bytes_round_trip;
mod commands;
mod concurrency;
mod connections;
mod console;
mod crash_recovery;
mod crash_under_load;
mod developer_loop;
mod end_to_end;
mod evolution;
mod hostile_plugins;
mod hot_reload;
mod inbox;
mod instance_pool;
mod log_outages;
mod openapi;
mod operations;
mod outbox;
mod polyglot;
mod queued_writes;
mod sagas;
mod scale_out;
mod soak;
mod subscriptions;
mod support;
