//! Persisting the node's snapshot in the data directory.
//!
//! Owns `save` (atomic: write a temporary file in the same directory, fsync it, rename it over
//! the old one, fsync the directory) and `load` (refuses a snapshot older than a maximum age).
//! Plain blocking functions: the agent calls them from a blocking task. Must not decide what
//! a snapshot contains (`Node::snapshot`), when one is taken (`Node::poll_snapshot`: the
//! core's schedule, which the simulator follows too) nor how it is served (`Node::restore`).

use shoal_core::Snapshot;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// File name of the snapshot inside the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

#[derive(Debug, Error)]
pub enum SnapshotFileError {
    #[error("no snapshot at {0}")]
    NotFound(PathBuf),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {path} is unreadable: {msg}")]
    Decode { path: PathBuf, msg: String },
    #[error("snapshot {path} is {age_s} s old; the limit is {max_s} s")]
    TooOld {
        path: PathBuf,
        age_s: u64,
        max_s: u64,
    },
    #[error("snapshot {path} is dated {ahead_s} s in the future (clock change?); not used")]
    Future { path: PathBuf, ahead_s: u64 },
    #[error("snapshot {path} holds an invalid entry: {msg}; not used")]
    Invalid { path: PathBuf, msg: String },
}

/// A snapshot dated further ahead of our clock than this is refused.
const MAX_FUTURE_MS: u64 = 5 * 60 * 1000;

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotFileError + 'a {
    move |source| SnapshotFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `snap` to `path` atomically: a reader sees the old file or the new one, never a
/// partial one, even across a crash.
pub fn save(path: &Path, snap: &Snapshot) -> Result<(), SnapshotFileError> {
    let data = serde_json::to_vec(snap).map_err(|e| SnapshotFileError::Decode {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    write_atomic(path, &data)
}

/// Writes `data` to `path` atomically and privately (mode 0600): a temporary file in the same
/// directory, fsynced, renamed over the old one, then the directory fsynced. A reader sees the
/// old file or the new one, never a partial one, even across a crash. (Also the registrations
/// file's writer: `agent::registrations`.)
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SnapshotFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| SNAPSHOT_FILE.to_string());
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let res = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        // 0600: the member list is nobody else's business.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Reads the snapshot at `path`, refusing one older than `max_age` at `now_unix_ms`.
pub fn load(
    path: &Path,
    max_age: Duration,
    now_unix_ms: u64,
) -> Result<Snapshot, SnapshotFileError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SnapshotFileError::NotFound(path.to_path_buf()))
        }
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let snap: Snapshot = serde_json::from_slice(&data).map_err(|e| SnapshotFileError::Decode {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if snap.taken_at_unix_ms > now_unix_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(SnapshotFileError::Future {
            path: path.to_path_buf(),
            ahead_s: (snap.taken_at_unix_ms - now_unix_ms) / 1000,
        });
    }
    let bad_name = std::iter::once(snap.node.as_str())
        .chain(snap.members.iter().map(|m| m.name.as_str()))
        .chain(snap.baseline.iter().map(String::as_str))
        .find_map(|n| shoal_core::validate_name(n).err());
    if let Some(msg) = bad_name {
        return Err(SnapshotFileError::Invalid {
            path: path.to_path_buf(),
            msg,
        });
    }
    let age = snap.age(now_unix_ms);
    if age > max_age {
        return Err(SnapshotFileError::TooOld {
            path: path.to_path_buf(),
            age_s: age.as_secs(),
            max_s: max_age.as_secs(),
        });
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::{GuardMode, GuardReport, GuardState, MemberView, ServedStatus};
    use std::collections::BTreeMap;

    fn snap(at: u64) -> Snapshot {
        Snapshot {
            version: shoal_core::SNAPSHOT_VERSION,
            node: "n1".into(),
            taken_at_unix_ms: at,
            members: vec![MemberView {
                name: "n2".into(),
                addr: "127.0.0.1:7946".parse().unwrap(),
                status: ServedStatus::Held,
                truth: None,
                generation: 3,
                since_ms: 10,
                tags: BTreeMap::new(),
                services: vec![],
                meta_version: 2,
                cause: None,
                protocol: None,
                damping: None,
                gray: None,
            }],
            baseline: vec!["n2".into()],
            known_peers: vec!["127.0.0.1:7946".parse().unwrap()],
            guard: GuardReport {
                mode: GuardMode::Enforce,
                state: GuardState::Frozen,
                since_ms: 5,
                reason: "test".into(),
                held: 1,
                would_hold: 1,
                baseline: 1,
                escalated: false,
            },
            events: None,
        }
    }

    #[test]
    fn save_then_load_roundtrips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SNAPSHOT_FILE);
        save(&path, &snap(1_000)).unwrap();
        // Overwrite: the newer one wins.
        save(&path, &snap(2_000)).unwrap();
        let got = load(&path, Duration::from_secs(60), 3_000).unwrap();
        assert_eq!(got, snap(2_000));
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SNAPSHOT_FILE.to_string()]);
    }

    #[test]
    fn too_old_missing_and_corrupt_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SNAPSHOT_FILE);
        assert!(matches!(
            load(&path, Duration::from_secs(60), 0),
            Err(SnapshotFileError::NotFound(_))
        ));
        save(&path, &snap(1_000)).unwrap();
        let err = load(&path, Duration::from_secs(60), 1_000 + 61_000).unwrap_err();
        assert!(
            matches!(err, SnapshotFileError::TooOld { age_s: 61, .. }),
            "{err}"
        );
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            load(&path, Duration::from_secs(60), 1_000),
            Err(SnapshotFileError::Decode { .. })
        ));
    }

    #[test]
    fn private_future_dated_and_invalid_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SNAPSHOT_FILE);
        save(&path, &snap(1_000_000)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = load(&path, Duration::from_secs(60), 1_000_000 - 600_000).unwrap_err();
        assert!(matches!(err, SnapshotFileError::Future { .. }), "{err}");
        let mut bad = snap(1_000);
        bad.members[0].name = "no such/name".into();
        save(&path, &bad).unwrap();
        let err = load(&path, Duration::from_secs(60), 1_000).unwrap_err();
        assert!(matches!(err, SnapshotFileError::Invalid { .. }), "{err}");
    }

    #[test]
    fn save_into_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join(SNAPSHOT_FILE);
        assert!(matches!(
            save(&path, &snap(1)),
            Err(SnapshotFileError::Io { .. })
        ));
    }
}
