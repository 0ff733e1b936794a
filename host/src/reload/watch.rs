//! Watching the plugins directory (notify), with debouncing: a burst of
//! events for one file (an editor's multi-step save, a copy in progress) is
//! handled once, after the directory has been quiet for [`DEBOUNCE`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{is_watched_file, load_files, remove_file};
use crate::App;

/// Quiet time before changed files are handled.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Whether an event of `kind` can change a file's content or presence:
/// created, written, renamed, removed, or closed after writing. Opening,
/// reading and closing a file that was only read (refract's own read of a
/// plugin when it loads it) and changes of metadata (a `touch`) cannot,
/// and would otherwise load the file again, forever.
pub(crate) fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(
            ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any | ModifyKind::Other,
        ) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        // Backends that cannot tell what happened.
        EventKind::Any | EventKind::Other => true,
    }
}

/// Starts watching `app`'s plugins directory; the watch lasts as long as
/// the returned watcher is kept.
pub fn watch(app: Arc<App>, dir: PathBuf) -> notify::Result<RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(e) if changes_content(&e.kind) => {
            for p in e.paths {
                let _ = tx.send(p);
            }
        }
        Ok(_) => {}
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
            let changed: Vec<PathBuf> = changed.into_iter().filter(|p| is_watched_file(p)).collect();
            if changed.is_empty() {
                continue;
            }
            let app = app.clone();
            // Compiling is CPU work: keep it off the async workers.
            let handled = tokio::task::spawn_blocking(move || {
                // Removals first: a file replacing another (an upcaster of
                // the same type and version under a new name) loads once the
                // one it replaces is gone.
                let (present, removed): (Vec<PathBuf>, Vec<PathBuf>) =
                    changed.into_iter().partition(|f| f.is_file());
                for file in removed {
                    tracing::info!(file = %file.display(), "file removed; unloading");
                    remove_file(&app, &file);
                }
                for file in &present {
                    tracing::info!(file = %file.display(), "file changed; loading");
                }
                load_files(&app, &present);
            });
            if let Err(e) = handled.await {
                tracing::error!(error = %e, "plugin reload task failed");
            }
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use notify::EventKind;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RenameMode,
    };

    use super::changes_content;

    #[test]
    fn reads_and_touches_are_not_changes() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert!(!changes_content(&kind), "{kind:?}");
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(notify::event::RemoveKind::File),
        ] {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }
}
