//! refract: a CQRS / event-sourcing runtime. An append-only SQLite event log
//! (the write side) and sandboxed WebAssembly plugins that turn it into read
//! models, queried over HTTP.
//!
//! The binary is a thin shell over [`App`]; tests drive the same code.
#![deny(unsafe_code)]
// No panics on input-driven paths: the host holds other teams' code and
// the system of record.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod app;
pub mod client;
pub mod command;
pub mod db;
pub mod dev;
pub mod evolution;
pub mod http;
pub mod inbox;
pub mod log;
pub mod metrics;
pub mod outbox;
pub mod plugin;
pub mod projection;
pub mod reload;
pub mod subscribe;

pub use app::{App, Config};
