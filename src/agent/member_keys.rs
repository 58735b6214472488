//! This agent's member key pair and its table of known members' keys, in the data directory.
//!
//! Owns two files: `member.key` (the 64 secret bytes the Ed25519 and X25519 keys are built
//! from, base64, mode 0600; drawn from the operating system's generator at first start, read
//! at every later one) and `known_members` (one line per name bound to a key: `name sign
//! seal`, base64, the table `core::bindings` keeps, written atomically whenever it changes).
//! Plain blocking functions, called at start and from the event loop. Must not decide whom
//! to trust (the core binds names to keys) nor print a secret.

use crate::agent::datadir::{write_private, DataDirError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use shoal_core::{MemberKeys, MemberPub, SECRET_LEN};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tracing::{info, warn};

/// The key pair's file in the data directory.
pub const KEY_FILE: &str = "member.key";
/// The known members' keys in the data directory.
pub const KNOWN_FILE: &str = "known_members";

fn bad(path: &Path, msg: impl Into<String>) -> DataDirError {
    DataDirError::MemberKey {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// This agent's key pair: read from `dir/member.key`, or drawn from the operating system and
/// written there (0600, atomically) when the file does not exist yet.
pub fn load_or_create(dir: &Path) -> Result<MemberKeys, DataDirError> {
    let path = dir.join(KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(m) = fs::metadata(&path) {
                if m.permissions().mode() & 0o077 != 0 {
                    warn!(path = %path.display(), "member key file was readable by others; restricted to 0600");
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
                }
            }
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            let bytes = B64
                .decode(line)
                .map_err(|e| bad(&path, format!("not base64: {e}")))?;
            let secret: [u8; SECRET_LEN] = bytes
                .try_into()
                .map_err(|_| bad(&path, format!("not {SECRET_LEN} bytes")))?;
            Ok(MemberKeys::from_secret(&secret))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; SECRET_LEN];
            getrandom::fill(&mut secret).map_err(|e| DataDirError::Io {
                op: "draw randomness for",
                path: path.clone(),
                source: io::Error::other(e.to_string()),
            })?;
            let text = format!(
                "# shoal member key (this agent's own signing and sealing keys). Keep it secret \
                 (mode 0600); restore it with the data directory when a host is rebuilt.\n{}\n",
                B64.encode(secret)
            );
            write_private(&path, &text)?;
            let keys = MemberKeys::from_secret(&secret);
            info!(path = %path.display(), key = %keys.public().fingerprint(), "created this agent's member key");
            Ok(keys)
        }
        Err(e) => Err(DataDirError::Io {
            op: "read",
            path,
            source: e,
        }),
    }
}

/// The names bound to keys by an earlier run (`known_members`), or none. A line that does not
/// parse is skipped with a warning (the name is then bound again on first use).
pub fn load_known(dir: &Path) -> Result<Vec<(Arc<str>, MemberPub)>, DataDirError> {
    let path = dir.join(KNOWN_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(DataDirError::Io {
                op: "read",
                path,
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Some(entry) => out.push(entry),
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        warn!(path = %path.display(), skipped, "lines of the known members' keys did not parse");
    }
    Ok(out)
}

fn key32(s: &str) -> Option<[u8; 32]> {
    B64.decode(s).ok()?.try_into().ok()
}

fn parse_line(line: &str) -> Option<(Arc<str>, MemberPub)> {
    let mut parts = line.split_whitespace();
    let name = parts.next()?;
    let sign = key32(parts.next()?)?;
    let seal = key32(parts.next()?)?;
    if parts.next().is_some() || shoal_core::validate_name(name).is_err() {
        return None;
    }
    Some((Arc::from(name), MemberPub { sign, seal }))
}

/// Writes the table of known members' keys (0600, atomically).
pub fn save_known(dir: &Path, known: &[(Arc<str>, MemberPub)]) -> Result<(), DataDirError> {
    let mut text = String::from(
        "# shoal known members: name, signing key, sealing key (base64). A name's first signed \
         record binds it; `shoal keys forget NAME` unbinds it (a rebuilt host).\n",
    );
    for (name, k) in known {
        text.push_str(&format!(
            "{name} {} {}\n",
            B64.encode(k.sign),
            B64.encode(k.seal)
        ));
    }
    write_private(&dir.join(KNOWN_FILE), &text)
}

/// Saves the known members' keys off the event loop: the loop hands over each new table
/// ([`KnownSaver::save`]) and a task writes the latest one (a burst of bindings, as when
/// joining a large cluster, is one write; an fsync on a busy disk never delays a probe's
/// answer). A table handed over just before the agent stops may not be written: those names
/// are bound again on first use.
pub struct KnownSaver(tokio::sync::watch::Sender<Arc<Known>>);

/// Names and the keys bound to them, as persisted.
pub type Known = Vec<(Arc<str>, MemberPub)>;

impl KnownSaver {
    /// Starts the task writing into `dir` (it ends when the saver is dropped).
    pub fn spawn(dir: std::path::PathBuf) -> KnownSaver {
        let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let known = rx.borrow_and_update().clone();
                let dir = dir.clone();
                match tokio::task::spawn_blocking(move || save_known(&dir, &known)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "could not save the known members' keys"),
                    Err(e) => warn!(error = %e, "saving the known members' keys failed"),
                }
            }
        });
        KnownSaver(tx)
    }

    pub fn save(&self, known: Known) {
        self.0.send_replace(Arc::new(known));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap().public(), a.public());
        fs::write(dir.path().join(KEY_FILE), "not base64!\n").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }

    #[test]
    fn known_members_round_trip_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_known(dir.path()).unwrap().is_empty());
        let k = MemberKeys::from_secret(&[3; SECRET_LEN]).public();
        let known = vec![(Arc::from("web-1"), k), (Arc::from("db-1"), k)];
        save_known(dir.path(), &known).unwrap();
        assert_eq!(load_known(dir.path()).unwrap(), known);
        let path = dir.path().join(KNOWN_FILE);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("bad line\n");
        fs::write(&path, text).unwrap();
        assert_eq!(load_known(dir.path()).unwrap(), known);
    }
}
