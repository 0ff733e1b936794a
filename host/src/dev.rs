//! `refract dev`: build the plugin crates of a source directory for
//! wasm32-wasip2 and serve them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use refract_plugin_build::{Build, package_name, plugin_crates};

/// Builds every plugin crate directly below `source` and copies the
/// components into `plugins_dir`. Returns the files written.
pub fn build_plugins(source: &Path, target_dir: &Path, plugins_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let crates = plugin_crates(source)
        .with_context(|| format!("while listing plugin crates in {}", source.display()))?;
    anyhow::ensure!(
        !crates.is_empty(),
        "no plugin crates (directories with a Cargo.toml) in {}",
        source.display()
    );
    std::fs::create_dir_all(plugins_dir)
        .with_context(|| format!("while creating {}", plugins_dir.display()))?;
    let mut written = Vec::new();
    for dir in crates {
        let package = package_name(&dir)?;
        tracing::info!(plugin = %package, "building for {}", refract_plugin_build::TARGET);
        let build = Build {
            manifest_path: dir.join("Cargo.toml"),
            packages: vec![package.clone()],
            target_dir: target_dir.to_path_buf(),
            capture: false,
        };
        for artifact in build.run()? {
            let dest = plugins_dir.join(format!("{package}.wasm"));
            // Copy to a temporary name and rename, so a watcher never sees
            // a half-written file.
            let tmp = plugins_dir.join(format!(".{package}.wasm.tmp"));
            std::fs::copy(&artifact, &tmp)
                .with_context(|| format!("while copying {}", artifact.display()))?;
            std::fs::rename(&tmp, &dest).with_context(|| format!("while installing {}", dest.display()))?;
            written.push(dest);
        }
    }
    Ok(written)
}
