//! Loading the plugins directory: every `*.wasm` is compiled, checked
//! against its world, and handed to the projections or the command
//! handlers. A file that fails is reported, and the others still load.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::command::Handlers;
use crate::plugin::{Plugin, PluginEngine};
use crate::projection::Projections;

/// A plugin file that could not be loaded.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidPlugin {
    /// The file's name without `.wasm`.
    pub name: String,
    /// The file.
    pub file: String,
    /// Always `invalid`.
    pub status: &'static str,
    /// Why it could not be loaded.
    pub error: String,
}

/// The `*.wasm` files directly in `dir`, sorted.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads `file` and starts it as a projection or registers it as a handler.
/// Must be called inside a tokio runtime (projection runners use it).
pub fn load_file(
    engine: &PluginEngine,
    projections: &Projections,
    handlers: &Handlers,
    file: &Path,
) -> Result<(), InvalidPlugin> {
    let loaded = match engine.load(file).map_err(|e| e.to_string()) {
        Ok(Plugin::Projection(p)) => projections.add(p),
        Ok(Plugin::Handler(h)) => handlers.add(h),
        Err(e) => Err(e),
    };
    loaded.map_err(|error| {
        tracing::error!(file = %file.display(), %error, "plugin not loaded");
        InvalidPlugin {
            name: file.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
            file: file.display().to_string(),
            status: "invalid",
            error,
        }
    })
}
