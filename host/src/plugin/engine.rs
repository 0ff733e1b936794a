//! The process-wide wasmtime engine and its epoch ticker.

use std::path::Path;
use std::time::Duration;

use wasmtime::{Cache, CacheConfig, Config, Engine};

/// How often the engine's epoch advances: the resolution of call budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Creates the engine every plugin is compiled and run with, and starts the
/// thread that advances its epoch (it ends when the engine is dropped).
/// With `cache_dir`, compiled code is cached on disk, keyed by the
/// component's bytes and the engine's settings, so a restart with unchanged
/// plugins does not compile them again.
pub fn new_engine(cache_dir: Option<&Path>) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    if let Some(dir) = cache_dir {
        // wasmtime wants an absolute path; the data directory may be given
        // relative to where refract was started (the default is).
        let dir = std::path::absolute(dir)?;
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        config.cache(Some(Cache::new(cache)?));
    }
    // wasmtime 48 enables concurrency support by default, which makes every
    // call markedly slower; plugins are called synchronously.
    config.concurrency_support(false);
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let weak = engine.weak();
    std::thread::Builder::new().name("refract-epoch".into()).spawn(move || {
        while let Some(engine) = weak.upgrade() {
            engine.increment_epoch();
            drop(engine);
            std::thread::sleep(EPOCH_TICK);
        }
    })?;
    Ok(engine)
}

/// The number of epoch ticks in `budget`, at least one.
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_cache_directory_is_accepted() {
        // The default data directory, `.refract/data`, is relative.
        let engine = new_engine(Some(Path::new(".refract-test/data/cache")));
        let _ = std::fs::remove_dir_all(".refract-test");
        assert!(engine.is_ok(), "{:?}", engine.err());
    }
}
