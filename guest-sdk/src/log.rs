//! Log messages to the host's structured log, tagged with the plugin's name.
//!
//! Natively (in unit tests) messages go to stderr.

#[cfg(target_family = "wasm")]
use crate::__private::bindings::refract::plugin::log as host;

#[cfg(target_family = "wasm")]
fn write(level: host::Level, message: &str) {
    host::write(level, message);
}

#[cfg(not(target_family = "wasm"))]
fn write(level: &str, message: &str) {
    eprintln!("[{level}] {message}");
}

macro_rules! level {
    ($(#[$doc:meta] $name:ident => $wasm:ident, $native:literal;)*) => {$(
        #[$doc]
        pub fn $name(message: &str) {
            #[cfg(target_family = "wasm")]
            write(host::Level::$wasm, message);
            #[cfg(not(target_family = "wasm"))]
            write($native, message);
        }
    )*};
}

level! {
    /// Very detailed tracing, normally filtered out by the host.
    trace => Trace, "trace";
    /// Information useful while developing the plugin.
    debug => Debug, "debug";
    /// A normal operational message.
    info => Info, "info";
    /// Something unexpected that the plugin handled.
    warn => Warn, "warn";
    /// Something failed.
    error => Error, "error";
}
