//! Where a projection's databases live: `projections/<name>/`, one file per
//! build (`<unix-ms>-<hash>-<nonce>.db`, created exclusively, so no two
//! builds ever share a file), and `CURRENT` naming the one that serves
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

/// Creates the (empty) file of a new build of `name` by plugin `hash` and
/// returns its path. The name carries the time, the plugin's hash and a
/// random nonce, and the file is created with `O_EXCL`: two builds started
/// at once, in this process or another, never get the same file.
pub fn new_generation(root: &Path, name: &str, hash: &str) -> std::io::Result<PathBuf> {
    let dir = dir(root, name);
    std::fs::create_dir_all(&dir)?;
    new_file(&dir, &format!("{}-{}", crate::db::unix_ms(), &hash[..hash.len().min(12)]))
}

/// Creates a new empty file `<stem>-<nonce>.db` in `dir`, exclusively.
pub fn new_file(dir: &Path, stem: &str) -> std::io::Result<PathBuf> {
    loop {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let path = dir.join(format!("{stem}-{}.db", &nonce[..12]));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
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

/// Deletes every file of the projection's directory but `keep` (with its
/// `-wal` and `-shm`) and `CURRENT`: builds abandoned by a crash or a
/// restart, with their WAL and shared-memory files, and a half-written
/// `CURRENT.tmp`. Call it only while no build of the projection runs.
pub fn remove_others(keep: &Path) {
    let Some(dir) = keep.parent() else { return };
    let Some(keep_name) = keep.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    let kept =
        [keep_name.clone(), format!("{keep_name}-wal"), format!("{keep_name}-shm"), CURRENT.to_owned()];
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_file()) && !kept.contains(&name) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::debug!(file = %e.path().display(), "removed an abandoned build's file"),
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot remove an abandoned build's file")
                }
            }
        }
    }
}

/// Deletes whatever a crash or a restart left in `dir` (a scratch
/// directory, such as `verify`'s): every file in it.
pub fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_started_together_get_files_of_their_own() {
        let root = crate::db::scratch_dir("layout-unique");
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .map(|_| new_generation(&root, "p", "abcdef0123456789").unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<&PathBuf> = paths.iter().collect();
        assert_eq!(distinct.len(), 400, "two builds got the same file");
        assert!(paths.iter().all(|p| p.is_file()), "each file exists once created");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_the_serving_build_and_current_survive_a_sweep() {
        let root = crate::db::scratch_dir("layout-sweep");
        let keep = new_generation(&root, "p", "aaaa").unwrap();
        set_current(&keep).unwrap();
        let dir = keep.parent().unwrap().to_path_buf();
        let abandoned = new_generation(&root, "p", "bbbb").unwrap();
        for extra in ["-wal", "-shm"] {
            let mut p = abandoned.clone().into_os_string();
            p.push(extra);
            std::fs::write(&p, b"x").unwrap();
            let mut p = keep.clone().into_os_string();
            p.push(extra);
            std::fs::write(&p, b"x").unwrap();
        }
        // The WAL of a build whose database is already gone.
        std::fs::write(dir.join("123-orphan.db-wal"), b"x").unwrap();
        std::fs::write(dir.join("CURRENT.tmp"), b"x").unwrap();
        remove_others(&keep);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let k = keep.file_name().unwrap().to_string_lossy().into_owned();
        let mut expected = vec!["CURRENT".to_owned(), k.clone(), format!("{k}-shm"), format!("{k}-wal")];
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(current(&root, "p"), Some(keep));
        let _ = std::fs::remove_dir_all(&root);
    }
}
