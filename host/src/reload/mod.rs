//! The plugins directory: load every `*.wasm` (and every event schema,
//! `<EventType>.v<N>.schema.json`) at startup, then watch it.
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
use crate::evolution::contracts;
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
    Upcaster(String),
    Schema,
}

/// A file that serves: what it provides, the hash of its bytes, and the
/// event types it declared versions of (which upcasters it reads through).
#[derive(Debug, Clone)]
struct Loaded {
    provides: Provides,
    hash: [u8; 32],
    reads: Vec<String>,
}

/// The plugins directory's bookkeeping: which file provides what, which
/// files are invalid.
#[derive(Default)]
pub struct PluginFiles {
    loaded: Mutex<HashMap<PathBuf, Loaded>>,
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

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Loaded>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `path` is a plugin file (`*.wasm`, not hidden: editors and
/// `refract dev` write hidden temporary files first).
pub fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "wasm")
        && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Whether the plugins directory's watcher handles `path`: a plugin or an
/// event schema (`<EventType>.v<N>.schema.json`).
pub fn is_watched_file(path: &Path) -> bool {
    is_plugin_file(path) || contracts::is_schema_file(path)
}

/// The plugin files directly in `dir`, sorted.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    files(dir, is_plugin_file)
}

fn files(dir: &Path, keep: fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every event schema and plugin in `dir`: schemas first, then
/// upcasters, then the plugins that read through them (so that none is
/// built once without its upcasters, then again with them). Must be called
/// inside a tokio runtime.
pub fn load_dir(app: &App, dir: &Path) -> std::io::Result<()> {
    load_files(app, &files(dir, is_watched_file)?);
    Ok(())
}

/// Loads (or reloads) `files` together: schemas first, then upcasters,
/// then the plugins that may read through them.
pub fn load_files(app: &App, files: &[PathBuf]) {
    for file in files.iter().filter(|f| contracts::is_schema_file(f)) {
        load_file(app, file);
    }
    let mut rest = Vec::new();
    for file in files.iter().filter(|f| is_plugin_file(f)).cloned() {
        match compile(app, &file, false) {
            Compiled::Plugin(p, hash) if matches!(*p, Plugin::Upcaster(_)) => {
                install(app, &file, *p, hash);
            }
            other => rest.push((file, other)),
        }
    }
    for (file, compiled) in rest {
        finish(app, &file, compiled);
    }
}

/// What reading and compiling a file gave.
enum Compiled {
    /// The bytes of the version serving.
    Unchanged,
    /// It could not be read or loaded.
    Failed(String),
    /// A plugin, and the hash of its bytes.
    Plugin(Box<Plugin>, [u8; 32]),
}

fn compile(app: &App, file: &Path, force: bool) -> Compiled {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return Compiled::Failed(format!("cannot read {}: {e}", file.display())),
    };
    let hash: [u8; 32] = Sha256::digest(&bytes).into();
    let same = app.files.loaded().get(file).is_some_and(|l| l.hash == hash);
    if same && !force {
        return Compiled::Unchanged;
    }
    match app.engine.load_bytes(file, &bytes) {
        Ok(p) => Compiled::Plugin(Box::new(p), hash),
        Err(e) => Compiled::Failed(e.to_string()),
    }
}

fn finish(app: &App, file: &Path, compiled: Compiled) -> bool {
    match compiled {
        Compiled::Unchanged => {
            // Unchanged (an editor's rewrite of the same bytes, or the
            // serving version put back after a broken one).
            app.metrics.plugin_load("unchanged");
            app.files.set_invalid(file, None);
            true
        }
        Compiled::Failed(error) => {
            app.metrics.plugin_load("failed");
            record_failure(app, file, error);
            false
        }
        Compiled::Plugin(plugin, hash) => install(app, file, *plugin, hash),
    }
}

/// Loads (or reloads) `file`: a plugin or an event schema. Returns whether
/// it now serves; on failure the reason is logged and listed, and any
/// previous version keeps serving. Compiles on the calling thread: call it
/// off the async runtime's hot path.
pub fn load_file(app: &App, file: &Path) -> bool {
    if contracts::is_schema_file(file) {
        return load_schema(app, file);
    }
    finish(app, file, compile(app, file, false))
}

fn load_schema(app: &App, file: &Path) -> bool {
    match app.handlers.contracts.load_file(file) {
        Ok(_) => {
            app.files.loaded().insert(
                file.to_path_buf(),
                Loaded { provides: Provides::Schema, hash: [0; 32], reads: Vec::new() },
            );
            app.files.set_invalid(file, None);
            true
        }
        Err(error) => {
            record_failure(app, file, error);
            false
        }
    }
}

fn install(app: &App, file: &Path, plugin: Plugin, hash: [u8; 32]) -> bool {
    let previous = app.files.loaded().get(file).cloned();
    let mut upcast_type = None;
    let outcome = match plugin {
        Plugin::Projection(mut p) => {
            let name = p.description.name.clone();
            let reads = p.description.event_versions.iter().map(|v| v.event_type.clone()).collect();
            p.upcasts = app.upcasters.plan(&p.description.event_versions, &app.metrics);
            if let Some(plan) = &p.upcasts {
                p.hash = plan.identity(&p.hash);
            }
            let replace = previous.as_ref().is_some_and(|l| l.provides == Provides::Projection(name.clone()));
            app.projections.load(p, replace).map(|()| (Provides::Projection(name), reads))
        }
        Plugin::Handler(mut h) => {
            let name = h.description.name.clone();
            let reads = h.description.event_versions.iter().map(|v| v.event_type.clone()).collect();
            h.upcasts = app.upcasters.plan(&h.description.event_versions, &app.metrics);
            if let Some(plan) = &h.upcasts {
                h.hash = plan.identity(&h.hash);
            }
            app.handlers.add(h).map(|()| (Provides::Handler(name), reads))
        }
        Plugin::Upcaster(u) => {
            let name = u.description.name.clone();
            upcast_type = Some(u.description.event_type.clone());
            app.upcasters.add(u).map(|()| (Provides::Upcaster(name), Vec::new()))
        }
    };
    app.metrics.plugin_load(if outcome.is_ok() { "loaded" } else { "failed" });
    match outcome {
        Ok((provides, reads)) => {
            // A file that switched from one plugin to another unloads the old.
            if let Some(old) = previous
                && old.provides != provides
            {
                unload(app, &old.provides);
            }
            app.files.loaded().insert(file.to_path_buf(), Loaded { provides, hash, reads });
            app.files.set_invalid(file, None);
            if let Some(t) = upcast_type {
                reload_readers(app, &t);
            }
            true
        }
        Err(error) => {
            record_failure(app, file, error);
            false
        }
    }
}

/// Loads again the plugins that read `event_type` through upcasters, so
/// that they take the upcasters loaded now: a projection whose upcasters
/// changed is rebuilt blue/green.
fn reload_readers(app: &App, event_type: &str) {
    let readers: Vec<PathBuf> = app
        .files
        .loaded()
        .iter()
        .filter(|(_, l)| l.reads.iter().any(|t| t == event_type))
        .map(|(f, _)| f.clone())
        .collect();
    for file in readers {
        tracing::info!(file = %file.display(), event_type, "the upcasters of a type it reads changed; loading it again");
        finish(app, &file, compile(app, &file, true));
    }
}

fn record_failure(app: &App, file: &Path, error: String) {
    let serving = app.files.loaded().contains_key(file);
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
        Provides::Upcaster(name) => {
            if let Some(t) = app.upcasters.remove(name) {
                tracing::info!(upcaster = %name, "upcaster unloaded");
                reload_readers(app, &t);
            }
        }
        Provides::Schema => {}
    }
}

/// Unloads whatever `file` provided (it was deleted).
pub fn remove_file(app: &App, file: &Path) {
    if contracts::is_schema_file(file) && app.handlers.contracts.remove_file(file) {
        tracing::info!(file = %file.display(), "event schema removed");
    }
    let removed = app.files.loaded().remove(file);
    if let Some(l) = removed {
        unload(app, &l.provides);
    }
    app.files.set_invalid(file, None);
}
