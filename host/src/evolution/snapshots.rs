//! Command-handler snapshots: the state a handler folded from a stream's
//! first events, kept so that a command on a long stream folds only what
//! came after. One file per handler build and stream, under
//! `DATA/snapshots/<handler>/<build>/`: a new version of the handler (or
//! of an upcaster it reads through) is another build and starts without
//! snapshots. A snapshot is a cache: one that cannot be read — truncated,
//! corrupt, from another log, refused by the handler — is ignored and the
//! whole history used instead.
//!
//! File layout (integers little-endian): the magic `RFSNAP1\n`; the stream
//! version and log position the state covers (8 bytes each); the stream
//! id's length (4 bytes) and the state's (4 bytes); the SHA-256 of the
//! stream id and state (32 bytes); the stream id; the state.

use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"RFSNAP1\n";
const HEADER: usize = 8 + 8 + 8 + 4 + 4 + 32;

/// A handler's state for a stream up to a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// How many of the stream's events the state covers.
    pub version: u64,
    /// The log position of the stream's event at `version`: a snapshot
    /// whose event is not there (another log) is not used.
    pub position: u64,
    /// The state, as the handler serialized it.
    pub state: Vec<u8>,
}

/// Where snapshots are kept, and how often.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
    every: u64,
}

impl SnapshotStore {
    /// Snapshots under `dir`, one when at least `every` events were
    /// folded since the last (0: none).
    pub fn new(dir: PathBuf, every: u64) -> Self {
        Self { dir, every }
    }

    /// Events folded after which a snapshot is kept; 0: never.
    pub fn every(&self) -> u64 {
        self.every
    }

    fn build_dir(&self, handler: &str, build: &str) -> PathBuf {
        self.dir.join(handler).join(&build[..build.len().min(32)])
    }

    /// The file of `stream`'s snapshot by build `build` of `handler`.
    pub fn file(&self, handler: &str, build: &str, stream: &str) -> PathBuf {
        let name = crate::plugin::hex(&Sha256::digest(stream.as_bytes())[..16]);
        self.build_dir(handler, build).join(format!("{name}.snap"))
    }

    /// The snapshot of `stream`, if there is one; an error when there is
    /// one that cannot be read.
    pub fn load(&self, handler: &str, build: &str, stream: &str) -> Result<Option<Stored>, String> {
        let file = self.file(handler, build, stream);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        };
        decode(&bytes, stream).map(Some).map_err(|why| format!("{}: {why}", file.display()))
    }

    /// Keeps `snapshot` of `stream` (written aside, then renamed over the
    /// last one, so a reader never sees half a file).
    pub fn save(&self, handler: &str, build: &str, stream: &str, snapshot: &Stored) -> std::io::Result<()> {
        let file = self.file(handler, build, stream);
        let dir = file.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.{}", uuid::Uuid::new_v4().simple(), "tmp"));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encode(stream, snapshot))?;
            std::fs::rename(&tmp, &file)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Removes the snapshots of `handler`'s builds other than `build`.
    pub fn prune(&self, handler: &str, build: &str) {
        let keep = self.build_dir(handler, build);
        let Ok(entries) = std::fs::read_dir(self.dir.join(handler)) else { return };
        for e in entries.flatten() {
            if e.path() != keep {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn digest(stream: &[u8], state: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((stream.len() as u64).to_le_bytes());
    h.update(stream);
    h.update(state);
    h.finalize().into()
}

fn encode(stream: &str, s: &Stored) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + stream.len() + s.state.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&s.version.to_le_bytes());
    out.extend_from_slice(&s.position.to_le_bytes());
    out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
    out.extend_from_slice(&(s.state.len() as u32).to_le_bytes());
    out.extend_from_slice(&digest(stream.as_bytes(), &s.state));
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(&s.state);
    out
}

fn decode(bytes: &[u8], stream: &str) -> Result<Stored, &'static str> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a snapshot (truncated or another format)");
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
    let (version, position) = (u64_at(8), u64_at(16));
    let (stream_len, state_len) = (u32_at(24), u32_at(28));
    if bytes.len() != HEADER + stream_len + state_len {
        return Err("truncated");
    }
    let (id, state) = bytes[HEADER..].split_at(stream_len);
    if digest(id, state)[..] != bytes[32..HEADER] {
        return Err("checksum mismatch");
    }
    if id != stream.as_bytes() {
        return Err("the snapshot of another stream");
    }
    if version == 0 {
        return Err("covers no event");
    }
    Ok(Stored { version, position, state: state.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_and_any_damage_is_refused() {
        let dir = crate::db::scratch_dir("snapshots");
        let store = SnapshotStore::new(dir.clone(), 10);
        let s = Stored { version: 7, position: 42, state: b"{\"items\":3}".to_vec() };
        store.save("orders", "abc", "order-1", &s).unwrap();
        assert_eq!(store.load("orders", "abc", "order-1").unwrap(), Some(s.clone()));
        assert_eq!(store.load("orders", "other-build", "order-1").unwrap(), None);
        let file = store.file("orders", "abc", "order-1");
        let bytes = std::fs::read(&file).unwrap();
        for cut in [0, 5, HEADER, bytes.len() - 1] {
            std::fs::write(&file, &bytes[..cut]).unwrap();
            assert!(store.load("orders", "abc", "order-1").is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        assert!(store.load("orders", "abc", "order-1").is_err());
        store.save("orders", "new", "order-1", &s).unwrap();
        store.prune("orders", "new");
        assert!(!file.exists() && store.load("orders", "new", "order-1").unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
