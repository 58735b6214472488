//! The data directory and the keyring file in it.
//!
//! Owns preparing the directory at start (created or tightened to mode 0700, or 0710 given to
//! the API socket's group when the socket lives in it, so that `socket_group` works with the
//! default socket path while every file in it stays 0600; temporary files of an interrupted
//! save removed, an exclusive lock so two agents cannot share it) and the
//! keyring file (mode 0600, written atomically, read at start; once it exists it wins over
//! `--encrypt`, `--encrypt-file` and the config file, as Consul's does). Plain blocking
//! functions. Must not decide which key is primary (the core's keyring does) nor hold any
//! key in a log.

use shoal_core::{Key, Keyring};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use thiserror::Error;
use tracing::{info, warn};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "shoal.lock";

#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the data directory {} is in use by another agent (lock {} held); give each agent its own --data-dir",
        dir.display(),
        dir.join(LOCK_FILE).display()
    )]
    Locked { dir: PathBuf },
    #[error("keyring file {}: {msg}", path.display())]
    Keyring { path: PathBuf, msg: String },
    #[error(
        "no cluster key: pass --encrypt-file FILE (a file holding a key `shoal keygen` prints) or put a keyring file at {}; \
         to run without encryption (anyone who can send a datagram can speak for any node) pass --insecure",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "{}: {msg}; restore it from a backup, or move it away to create a new key (every other \
         agent then refuses this name's records until `shoal keys forget NAME` is run there)",
        path.display()
    )]
    MemberKey { path: PathBuf, msg: String },
    #[error("--encrypt and --insecure contradict each other; give one")]
    Contradiction,
    #[error("API token file {}: missing, unreadable or empty", path.display())]
    TokenFile { path: PathBuf },
    #[error("key file {} (--encrypt-file): missing, unreadable or empty; write one with `shoal keygen > FILE` (mode 0600), or copy the cluster's key there", path.display())]
    KeyFile { path: PathBuf },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A new random key, from the operating system's generator (`shoal keygen`).
pub fn generate_key() -> Result<Key, io::Error> {
    let mut bytes = [0u8; shoal_core::KEY_LEN];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Key::from_bytes(bytes))
}

/// One random key per process, in text form: the key `shoal dev` gives its local cluster,
/// and the one test clusters share.
pub fn process_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| match generate_key() {
        Ok(k) => k.to_base64(),
        // No OS randomness at all: a key from the time and pid (a local cluster only).
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let mut b = [0u8; shoal_core::KEY_LEN];
            b[..16].copy_from_slice(&t.to_le_bytes());
            b[16..20].copy_from_slice(&std::process::id().to_le_bytes());
            Key::from_bytes(b).to_base64()
        }
    })
    .clone()
}

/// Holds the data directory's lock for as long as it lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Creates the data directory (0700), locks it and removes temporary files of an interrupted
/// save.
pub fn prepare(dir: &Path) -> Result<DirLock, DataDirError> {
    prepare_for_group(dir, None)
}

/// As [`prepare`]; with `socket_group` (the gid of `api_server.socket_group`, when the API
/// socket is in this directory) the directory is 0710 and owned by that group: its members
/// may reach the socket by its name, and neither list the directory nor open anything else
/// (the keyring, snapshot and lock files are 0600).
pub fn prepare_for_group(dir: &Path, socket_group: Option<u32>) -> Result<DirLock, DataDirError> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let meta = fs::metadata(dir).map_err(io_err("stat", dir))?;
    let mode = meta.permissions().mode() & 0o777;
    let want = if socket_group.is_some() { 0o710 } else { 0o700 };
    if let Some(gid) = socket_group {
        if std::os::unix::fs::MetadataExt::gid(&meta) != gid {
            std::os::unix::fs::chown(dir, None, Some(gid))
                .map_err(io_err("give the socket group to", dir))?;
        }
    }
    if mode != want && (mode & !want != 0 || socket_group.is_some()) {
        fs::set_permissions(dir, fs::Permissions::from_mode(want))
            .map_err(io_err("set the mode of", dir))?;
        info!(path = %dir.display(), was = format!("{mode:o}"), now = format!("{want:o}"), "data directory mode set");
    }
    let lock_path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io_err("open", &lock_path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(DataDirError::Locked {
                dir: dir.to_path_buf(),
            })
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
    }
    // Temporary files are named `.<file>.tmp.<pid>` (see `snapshot::save` and
    // `save_keyring`); with the lock held, none of them belongs to a live save.
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && (name.contains(".tmp.") || name.ends_with(".tmp")) {
                let _ = fs::remove_file(e.path());
                info!(file = %name, "removed a temporary file of an interrupted save");
            }
        }
    }
    Ok(DirLock { _file: file })
}

/// Writes the keyring atomically with mode 0600.
pub fn save_keyring(path: &Path, ring: &Keyring) -> Result<(), DataDirError> {
    let text = format!(
        "# shoal keyring: one base64 key a line, the primary first. Keep it secret (mode 0600).\n{}",
        ring.to_text()
    );
    write_private(path, &text)
}

/// Writes `text` to `path` atomically (a temporary file, fsync, rename) with mode 0600.
pub fn write_private(path: &Path, text: &str) -> Result<(), DataDirError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "keyring".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(text.as_bytes())
            .map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err("rename into", path))?;
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

/// Reads the keyring file, or `None` when there is none. A file readable by others is
/// tightened to 0600 (with a warning).
pub fn load_keyring(path: &Path) -> Result<Option<Keyring>, DataDirError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    if let Ok(m) = fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            warn!(path = %path.display(), "keyring file was readable by others; restricted to 0600");
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        }
    }
    Keyring::from_text(&text)
        .map(Some)
        .map_err(|e| DataDirError::Keyring {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })
}

/// The cluster key in `path` (`--encrypt-file`), as `--encrypt` takes it; surrounding
/// whitespace ignored.
pub fn read_key_file(path: &Path) -> Result<String, DataDirError> {
    fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| DataDirError::KeyFile {
            path: path.to_path_buf(),
        })
}

/// The keyring an agent starts with: the keyring file if there is one (it wins: the key of
/// `encrypt` or `key_file` is not added to it, and a log line says so; the key file is not
/// even required then), else a new ring of that key (persisted), else `None` when
/// `insecure`; with neither, an error that says what to do. A key `keys remove` took out
/// (retired) never comes back this way.
pub fn startup_keyring(
    path: &Path,
    encrypt: Option<&str>,
    key_file: Option<&Path>,
    insecure: bool,
) -> Result<Option<Keyring>, DataDirError> {
    if insecure {
        if encrypt.is_some() || key_file.is_some() {
            return Err(DataDirError::Contradiction);
        }
        if path.exists() {
            warn!(path = %path.display(), "--insecure: the keyring file is ignored");
        }
        return Ok(None);
    }
    let key = encrypt
        .map(Key::parse)
        .transpose()
        .map_err(|e| DataDirError::Keyring {
            path: PathBuf::from("--encrypt"),
            msg: e.to_string(),
        })?;
    let Some(ring) = load_keyring(path)? else {
        let key = match (key, key_file) {
            (Some(k), _) => Some(k),
            (None, Some(f)) => Some(parse_key_file(f)?),
            (None, None) => None,
        };
        return match key {
            Some(k) => {
                let ring = Keyring::new(k);
                save_keyring(path, &ring)?;
                info!(path = %path.display(), key = %ring.primary().id(), "keyring file created from the given key");
                Ok(Some(ring))
            }
            None => Err(DataDirError::NoKey {
                path: path.to_path_buf(),
            }),
        };
    };
    // The keyring file wins. The given key is only compared with it, for the log line; an
    // unreadable key file is no reason not to start.
    let given = match (key, key_file) {
        (Some(k), _) => Some(Ok(k)),
        (None, Some(f)) => Some(parse_key_file(f)),
        (None, None) => None,
    };
    let file = path.display();
    match given {
        None => {}
        Some(Err(e)) => {
            info!(keyring = %file, error = %e, "the keyring file wins over --encrypt-file (not needed)")
        }
        Some(Ok(k)) if ring.contains(&k) => {
            info!(keyring = %file, key = %k.id(), "the keyring file wins over --encrypt/--encrypt-file (their key is in it)")
        }
        Some(Ok(k)) if ring.is_retired(&k) => warn!(
            keyring = %file,
            key = %k.id(),
            "the keyring file wins over --encrypt/--encrypt-file: their key was removed by \
             `shoal keys remove` and is never accepted again; take it out of this agent's \
             configuration"
        ),
        Some(Ok(k)) => warn!(
            keyring = %file,
            key = %k.id(),
            primary = %ring.primary().id(),
            "the keyring file wins over --encrypt/--encrypt-file: their key is not in it and is \
             ignored (to add it to the cluster: `shoal keys install --from-file FILE`)"
        ),
    }
    Ok(Some(ring))
}

/// The key in a key file (`--encrypt-file`), parsed.
fn parse_key_file(path: &Path) -> Result<Key, DataDirError> {
    Key::parse(&read_key_file(path)?).map_err(|e| DataDirError::Keyring {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::KEY_LEN;

    #[test]
    fn directory_private_locked_and_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join(".snapshot.json.tmp.123"), b"partial").unwrap();
        let lock = prepare(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!dir.join(".snapshot.json.tmp.123").exists());
        assert!(matches!(prepare(&dir), Err(DataDirError::Locked { .. })));
        drop(lock);
        assert!(prepare(&dir).is_ok());
    }

    /// With the socket's group, the directory lets that group reach the socket (search, no
    /// listing) and nothing else; without, it goes back to 0700.
    #[test]
    fn directory_searchable_by_the_socket_group() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        // A group this process may give: its own.
        let gid = fs::metadata(root.path()).unwrap().gid();
        let lock = prepare_for_group(&dir, Some(gid)).unwrap();
        let m = fs::metadata(&dir).unwrap();
        assert_eq!((m.permissions().mode() & 0o777, m.gid()), (0o710, gid));
        drop(lock);
        let _lock = prepare(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn keyring_file_rules() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("keyring");
        assert!(matches!(
            startup_keyring(&path, None, None, false),
            Err(DataDirError::NoKey { .. })
        ));
        assert_eq!(startup_keyring(&path, None, None, true).unwrap(), None);
        let k1 = Key::from_bytes([1; KEY_LEN]);
        let k2 = Key::from_bytes([2; KEY_LEN]);
        assert!(matches!(
            startup_keyring(&path, Some(&k1.to_base64()), None, true),
            Err(DataDirError::Contradiction)
        ));
        let ring = startup_keyring(&path, Some(&k1.to_base64()), None, false)
            .unwrap()
            .unwrap();
        assert_eq!(ring.primary(), &k1);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The file wins; another --encrypt key is not added to it.
        let ring = startup_keyring(&path, Some(&k2.to_base64()), None, false)
            .unwrap()
            .unwrap();
        assert_eq!(ring.primary(), &k1);
        assert!(!ring.contains(&k2));
        assert_eq!(load_keyring(&path).unwrap().unwrap(), ring);
        assert!(startup_keyring(&path, Some("nope"), None, false).is_err());
    }

    /// After install NEW, use NEW, remove OLD, an agent restarted with OLD (flag or key
    /// file) keeps the ring of the file: OLD does not come back.
    #[test]
    fn a_retired_key_given_at_start_does_not_come_back() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("keyring");
        let (old, new) = (Key::from_bytes([1; KEY_LEN]), Key::from_bytes([2; KEY_LEN]));
        let mut ring = startup_keyring(&path, Some(&old.to_base64()), None, false)
            .unwrap()
            .unwrap();
        ring.install(new.clone()).unwrap();
        ring.use_key(&new).unwrap();
        ring.remove(&old).unwrap();
        save_keyring(&path, &ring).unwrap();
        let key_file = root.path().join("old.key");
        fs::write(&key_file, format!("{}\n", old.to_base64())).unwrap();
        for (flag, file) in [
            (Some(old.to_base64()), None),
            (None, Some(key_file.as_path())),
        ] {
            let r = startup_keyring(&path, flag.as_deref(), file, false)
                .unwrap()
                .unwrap();
            assert_eq!(r.keys(), std::slice::from_ref(&new));
            assert!(r.is_retired(&old));
        }
        assert_eq!(load_keyring(&path).unwrap().unwrap(), ring);
        // Once the keyring exists, the key file is not needed.
        let gone = root.path().join("missing.key");
        let r = startup_keyring(&path, None, Some(&gone), false).unwrap();
        assert_eq!(r, Some(ring));
        // Without a keyring, a key file is required and read.
        let fresh = root.path().join("fresh-keyring");
        assert!(matches!(
            startup_keyring(&fresh, None, Some(&gone), false),
            Err(DataDirError::KeyFile { .. })
        ));
        let r = startup_keyring(&fresh, None, Some(&key_file), false).unwrap();
        assert_eq!(r.map(|r| r.primary().clone()), Some(old));
    }
}
