//! Where a projection's databases live: `projections/<name>/`, one file per
//! build (`<unix-ms>-<hash>.db`), and `CURRENT` naming the one that serves
//! queries. A rebuild writes a new file next to the serving one and
//! switches `CURRENT` (write-then-rename, atomic) once it has caught up.

use std::path::{Path, PathBuf};

const CURRENT: &str = "CURRENT";

/// The directory of projection `name`.
pub fn dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// The database that currently serves `name`, if there is one.
pub fn current(root: &Path, name: &str) -> Option<PathBuf> {
    let dir = dir(root, name);
    let file = std::fs::read_to_string(dir.join(CURRENT)).ok()?;
    let path = dir.join(file.trim());
    path.is_file().then_some(path)
}

/// A fresh file name for a new build of `name` by plugin `hash`.
pub fn new_generation(root: &Path, name: &str, hash: &str) -> std::io::Result<PathBuf> {
    let dir = dir(root, name);
    std::fs::create_dir_all(&dir)?;
    let short = &hash[..hash.len().min(12)];
    let mut stamp = crate::db::unix_ms();
    loop {
        let path = dir.join(format!("{stamp}-{short}.db"));
        if !path.exists() {
            return Ok(path);
        }
        stamp += 1;
    }
}

/// Makes `path` the database that serves its projection.
pub fn set_current(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    std::fs::write(&tmp, name)?;
    std::fs::rename(&tmp, dir.join(CURRENT))
}

/// Deletes every database of the projection in `dir` except `keep`.
pub fn remove_others(keep: &Path) {
    let Some(dir) = keep.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "db") && p != keep {
            let _ = super::store::remove(&p);
        }
    }
}
