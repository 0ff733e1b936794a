//! Watching the plugins directory (notify), with debouncing: a burst of
//! events for one file (an editor's multi-step save, a copy in progress) is
//! handled once, after the directory has been quiet for [`DEBOUNCE`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{is_plugin_file, load_file, remove_file};
use crate::App;

/// Quiet time before changed files are handled.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Starts watching `app`'s plugins directory; the watch lasts as long as
/// the returned watcher is kept.
pub fn watch(app: Arc<App>, dir: PathBuf) -> notify::Result<RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) => {
            for p in e.paths {
                let _ = tx.send(p);
            }
        }
        Err(e) => tracing::warn!(error = %e, "plugins directory watch error"),
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = BTreeSet::from([first]);
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(p)) => {
                        changed.insert(p);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let changed: Vec<PathBuf> = changed.into_iter().filter(|p| is_plugin_file(p)).collect();
            if changed.is_empty() {
                continue;
            }
            let app = app.clone();
            // Compiling is CPU work: keep it off the async workers.
            let handled = tokio::task::spawn_blocking(move || {
                for file in changed {
                    if file.is_file() {
                        tracing::info!(file = %file.display(), "plugin file changed; loading");
                        load_file(&app, &file);
                    } else {
                        tracing::info!(file = %file.display(), "plugin file removed; unloading");
                        remove_file(&app, &file);
                    }
                }
            });
            if let Err(e) = handled.await {
                tracing::error!(error = %e, "plugin reload task failed");
            }
        }
    });
    Ok(watcher)
}
