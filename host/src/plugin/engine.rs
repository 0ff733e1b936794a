//! The process-wide wasmtime engine and its epoch ticker.

use std::path::Path;
use std::time::Duration;

use wasmtime::{Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::SandboxLimits;

/// How often the engine's epoch advances: the resolution of call budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core Wasm instances one plugin may consist of (a Rust component has its
/// own module plus a few adapter modules). Only a count: nothing is
/// reserved per core instance.
const CORE_INSTANCES_PER_PLUGIN: u32 = 16;
/// Tables one plugin may define; each pooled table reserves address space
/// for [`TABLE_ELEMENTS`] entries.
const TABLES_PER_PLUGIN: u32 = 4;
/// Entries a plugin's table may have (function pointers for indirect
/// calls; a large Rust plugin has a few thousand).
const TABLE_ELEMENTS: usize = 100_000;
/// Bytes of a pooled memory, and of a pooled table, that an ended instance
/// may leave resident: the pages it wrote, up to this much, are copied back
/// to their initial contents instead of being unmapped. Unmapping costs a
/// system call, a TLB flush on every core and a page fault for each page
/// the next instance touches again (measurements: P7 in
/// `bench/ANALYSIS.md`).
const KEEP_RESIDENT: usize = 1 << 20;

/// Creates the engine every plugin is compiled and run with, and starts the
/// thread that advances its epoch (it ends when the engine is dropped).
/// With `cache_dir`, compiled code is cached on disk, keyed by the
/// component's bytes and the engine's settings, so a restart with unchanged
/// plugins does not compile them again.
///
/// With [`SandboxLimits::max_instances`] above zero, instances come from
/// wasmtime's pooling allocator: every slot's address space is reserved
/// once, up front (4 GiB plus guard pages per memory, untouched until used,
/// so that compiled code needs no bounds checks), and an instance that ends
/// leaves its slot for the next one. Its memory and tables are reset by
/// copying their initial contents back over the pages it wrote, which stay
/// resident for the slot's next instance, up to [`KEEP_RESIDENT`] bytes
/// each; only what lies beyond is unmapped. On Linux 6.7 and later the
/// `PAGEMAP_SCAN` ioctl says which pages were written; on older kernels the
/// first [`KEEP_RESIDENT`] bytes are reset whatever was written. That makes
/// a fresh instance per command cheap; the price is a fixed number of
/// instances alive at once, and the pages each used slot keeps.
pub fn new_engine(cache_dir: Option<&Path>, limits: &SandboxLimits) -> anyhow::Result<Engine> {
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
    if limits.max_instances > 0 {
        let n = limits.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_PLUGIN))
            .total_memories(n)
            .total_tables(n.saturating_mul(TABLES_PER_PLUGIN))
            .max_tables_per_module(TABLES_PER_PLUGIN)
            .table_elements(TABLE_ELEMENTS)
            // A 32-bit memory never exceeds 4 GiB, whatever the cap says.
            .max_memory_size(limits.memory_bytes.min(1 << 32))
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
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
        let engine = new_engine(Some(Path::new(".refract-test/data/cache")), &SandboxLimits::default());
        let _ = std::fs::remove_dir_all(".refract-test");
        assert!(engine.is_ok(), "{:?}", engine.err());
    }
}
