//! The plugins directory: load every `*.wasm` at startup, then watch it.
//! A new file is loaded; a changed one is compiled and checked off the hot
//! path and replaces the old version (projections blue/green, handlers at
//! once); a removed one is unloaded (its read database is kept). A file that
//! fails to load leaves the version already serving in place, and is listed
//! as invalid with the reason.

pub(crate) mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use watch::{DEBOUNCE, watch};

use crate::App;
use crate::plugin::Plugin;

/// A plugin file that could not be loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvalidPlugin {
    /// The file's name without `.wasm`.
    pub name: String,
    /// The file.
    pub file: String,
    /// Always `invalid`.
    #[schema(pattern = "^invalid$")]
    pub status: &'static str,
    /// Why it could not be loaded.
    pub error: String,
}

/// What each plugin file provides.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Provides {
    Projection(String),
    Handler(String),
}

/// The plugins directory's bookkeeping: which file provides what, which
/// files are invalid.
#[derive(Default)]
pub struct PluginFiles {
    loaded: Mutex<HashMap<PathBuf, (Provides, [u8; 32])>>,
    invalid: Mutex<Vec<InvalidPlugin>>,
}

impl PluginFiles {
    /// The plugin files that failed to load, with the reasons.
    pub fn invalid(&self) -> Vec<InvalidPlugin> {
        self.invalid.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_invalid(&self, file: &Path, error: Option<String>) {
        let mut invalid = self.invalid.lock().unwrap_or_else(|p| p.into_inner());
        let shown = file.display().to_string();
        invalid.retain(|i| i.file != shown);
        if let Some(error) = error {
            invalid.push(InvalidPlugin {
                name: file.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
                file: shown,
                status: "invalid",
                error,
            });
        }
    }
}

/// Whether `path` is a plugin file (`*.wasm`, not hidden: editors and
/// `refract dev` write hidden temporary files first).
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "wasm")
        && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The plugin files directly in `dir`, sorted.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_plugin_file(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every plugin in `dir`. Must be called inside a tokio runtime.
pub fn load_dir(app: &App, dir: &Path) -> std::io::Result<()> {
    for file in wasm_files(dir)? {
        load_file(app, &file);
    }
    Ok(())
}

/// Loads (or reloads) `file`. Returns whether it now serves; on failure the
/// reason is logged and listed, and any previous version keeps serving.
/// Compiles on the calling thread: call it off the async runtime's hot path.
pub fn load_file(app: &App, file: &Path) -> bool {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            app.metrics.plugin_load("failed");
            record_failure(app, file, format!("cannot read {}: {e}", file.display()));
            return false;
        }
    };
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    let previous = app.files.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(file).cloned();
    if previous.as_ref().is_some_and(|(_, h)| *h == hash) {
        // Unchanged (an editor's rewrite of the same bytes, or the serving
        // version put back after a broken one).
        app.metrics.plugin_load("unchanged");
        app.files.set_invalid(file, None);
        return true;
    }
    let outcome = match app.engine.load_bytes(file, &bytes) {
        Ok(Plugin::Projection(p)) => {
            let name = p.description.name.clone();
            let replace =
                previous.as_ref().is_some_and(|(what, _)| *what == Provides::Projection(name.clone()));
            app.projections.load(p, replace).map(|()| Provides::Projection(name))
        }
        Ok(Plugin::Handler(h)) => {
            let name = h.description.name.clone();
            app.handlers.add(h).map(|()| Provides::Handler(name))
        }
        Err(e) => Err(e.to_string()),
    };
    app.metrics.plugin_load(if outcome.is_ok() { "loaded" } else { "failed" });
    match outcome {
        Ok(provides) => {
            // A file that switched from one plugin to another unloads the old.
            if let Some((old, _)) = previous
                && old != provides
            {
                unload(app, &old);
            }
            app.files
                .loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(file.to_path_buf(), (provides, hash));
            app.files.set_invalid(file, None);
            true
        }
        Err(error) => {
            record_failure(app, file, error);
            false
        }
    }
}

fn record_failure(app: &App, file: &Path, error: String) {
    let serving = app.files.loaded.lock().unwrap_or_else(|p| p.into_inner()).contains_key(file);
    if serving {
        tracing::error!(file = %file.display(), %error, "new version not loaded; the previous version keeps serving");
    } else {
        tracing::error!(file = %file.display(), %error, "plugin not loaded");
    }
    app.files.set_invalid(file, Some(error));
}

fn unload(app: &App, what: &Provides) {
    match what {
        Provides::Projection(name) => {
            app.projections.remove(name);
        }
        Provides::Handler(name) => {
            if app.handlers.remove(name) {
                tracing::info!(handler = %name, "command handler unloaded");
            }
        }
    }
}

/// Unloads whatever `file` provided (it was deleted).
pub fn remove_file(app: &App, file: &Path) {
    let removed = app.files.loaded.lock().unwrap_or_else(|p| p.into_inner()).remove(file);
    if let Some((what, _)) = removed {
        unload(app, &what);
    }
    app.files.set_invalid(file, None);
}
