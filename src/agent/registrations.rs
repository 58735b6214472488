//! What apps registered through the local API, kept across restarts: `registrations.json` in
//! the data directory.
//!
//! Owns the file's shape (the node's tags and services as they are, file and API changes
//! together; the checks of services registered through the API; and what the config file said
//! when last read, with its checks), writing it (atomically, mode 0600, after every change
//! through the API and every reload, one write at a time and always of the latest state),
//! reading it at start (a missing file is a first start; a corrupt one is a clear error and is
//! left in place), and what a start makes of it with the config file: exactly what a SIGHUP
//! would (`shoal_core::registrations`: the file's changes since it was last read win for their
//! keys, API changes otherwise survive). Must not decide what is gossiped or served.

use crate::agent::shared::AgentShared;
pub use crate::agent::shared::{Checks, RegistrationState};
use crate::agent::snapshot::{write_atomic, SnapshotFileError};
use serde::{Deserialize, Serialize};
use shoal_core::merge_meta;
use shoal_core::NodeMeta;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name inside the data directory.
pub const REGISTRATIONS_FILE: &str = "registrations.json";
/// Version of the file's shape this build writes (and the newest it reads).
pub const REGISTRATIONS_VERSION: u32 = 1;

#[derive(Debug, Error)]
pub enum RegistrationsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the registrations file {} is unreadable ({msg}); it holds what apps registered through \
         the API, so the agent does not start without it: repair it, or move it away to start \
         with the config file's tags and services only",
        path.display()
    )]
    Corrupt { path: PathBuf, msg: String },
    #[error(transparent)]
    Write(#[from] SnapshotFileError),
}

/// The content of `registrations.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registrations {
    pub version: u32,
    /// The node's tags and services (file and API changes together), check outputs left out.
    pub meta: NodeMeta,
    /// The checks of the services whose checks were last set through the API.
    #[serde(default)]
    pub api_checks: Checks,
    /// Tags and services as the config file gave them when last read (start or SIGHUP).
    pub file: NodeMeta,
    /// The config file's checks when last read.
    #[serde(default)]
    pub file_checks: Checks,
}

/// What an agent starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Startup {
    /// The node's tags and services.
    pub meta: NodeMeta,
    /// The checks to run, by service.
    pub checks: Checks,
    /// Which of them came through the API.
    pub api_checks: Checks,
}

/// Reads the registrations at `path`: `None` when there is none (a first start).
pub fn load(path: &Path) -> Result<Option<Registrations>, RegistrationsError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RegistrationsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let corrupt = |msg: String| RegistrationsError::Corrupt {
        path: path.to_path_buf(),
        msg,
    };
    let r: Registrations = serde_json::from_slice(&data).map_err(|e| corrupt(e.to_string()))?;
    if r.version > REGISTRATIONS_VERSION {
        return Err(corrupt(format!(
            "version {} is newer than this agent's {REGISTRATIONS_VERSION}",
            r.version
        )));
    }
    r.meta.validate().map_err(|e| corrupt(e.to_string()))?;
    r.file.validate().map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(r))
}

/// Writes `r` to `path` atomically (mode 0600).
pub fn save(path: &Path, r: &Registrations) -> Result<(), RegistrationsError> {
    let data = serde_json::to_vec_pretty(r).map_err(|e| RegistrationsError::Corrupt {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(write_atomic(path, &data)?)
}

/// What to start with: the config file now (`file`, `file_checks`) against what was persisted,
/// merged as a SIGHUP would merge it. Without a persisted file, the config file alone.
pub fn startup(saved: Option<&Registrations>, file: &NodeMeta, file_checks: &Checks) -> Startup {
    let Some(saved) = saved else {
        return Startup {
            meta: file.clone(),
            checks: file_checks.clone(),
            api_checks: Checks::new(),
        };
    };
    let meta = merge_meta(&saved.meta, &saved.file, file);
    // The file's checks of a service win when they changed in the file since it was read;
    // otherwise the API's (if the API set them last) stay.
    let changed: Vec<&String> = saved
        .file_checks
        .keys()
        .chain(file_checks.keys())
        .filter(|s| saved.file_checks.get(*s) != file_checks.get(*s))
        .collect();
    let mut api_checks = saved.api_checks.clone();
    for s in &changed {
        api_checks.remove(*s);
    }
    api_checks.retain(|s, _| meta.services.contains_key(s));
    let mut checks = file_checks.clone();
    checks.retain(|s, _| meta.services.contains_key(s) && !api_checks.contains_key(s));
    checks.extend(api_checks.clone());
    Startup {
        meta,
        checks,
        api_checks,
    }
}

/// The registrations as they are now (the node's own metadata, the API's checks, the file as
/// last read).
pub fn current(shared: &AgentShared) -> Registrations {
    let mut meta = shared.lock().own_meta().clone();
    for s in meta.services.values_mut() {
        s.health_output = None;
    }
    // One lock at a time (a reload takes the file's, then the node's).
    let file = shared
        .file_meta
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let state = shared
        .registrations
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Registrations {
        version: REGISTRATIONS_VERSION,
        meta,
        api_checks: state.api_checks.clone(),
        file,
        file_checks: state.file_checks.clone(),
    }
}

/// Persists the current registrations (after an API change or a reload). Writes one at a time,
/// each of the state as it is when its turn comes, so the file always ends with the latest.
/// Returns once the file is durable.
pub async fn persist(shared: &std::sync::Arc<AgentShared>) -> Result<(), RegistrationsError> {
    let _turn = shared.persist_turn.lock().await;
    let path = shared
        .registrations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .path
        .clone();
    let Some(path) = path else {
        return Ok(());
    };
    let r = current(shared);
    match tokio::task::spawn_blocking(move || save(&path, &r)).await {
        Ok(res) => res,
        Err(e) => Err(RegistrationsError::Write(SnapshotFileError::Io {
            op: "persist (task failed)",
            path: PathBuf::from(REGISTRATIONS_FILE),
            source: io::Error::other(e.to_string()),
        })),
    }
}

/// [`persist`], logging a failure: the change is applied and spreading, but would not survive
/// a restart.
pub async fn persist_or_log(
    shared: &std::sync::Arc<AgentShared>,
    what: &str,
) -> Result<(), RegistrationsError> {
    let res = persist(shared).await;
    if let Err(e) = &res {
        tracing::error!(error = %e, change = what, "applied, but NOT persisted: it will not survive a restart");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::checks::CheckSpec;
    use shoal_core::Service;
    use std::collections::BTreeMap;

    fn svc(name: &str, port: u16) -> Service {
        Service {
            name: name.into(),
            port,
            tags: BTreeMap::new(),
            health: None,
            health_output: None,
        }
    }

    fn meta(tags: &[(&str, &str)], services: &[(&str, u16)]) -> NodeMeta {
        NodeMeta {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            services: services
                .iter()
                .map(|(n, p)| (n.to_string(), svc(n, *p)))
                .collect(),
        }
    }

    fn ttl(s: &str) -> Vec<CheckSpec> {
        vec![CheckSpec {
            ttl: Some(s.into()),
            ..Default::default()
        }]
    }

    fn saved() -> Registrations {
        Registrations {
            version: REGISTRATIONS_VERSION,
            // The file gave zone=a and web; the API set role=db, registered pg (ttl check)
            // and deregistered web.
            meta: meta(&[("zone", "a"), ("role", "db")], &[("pg", 5432)]),
            api_checks: [("pg".to_string(), ttl("30s"))].into(),
            file: meta(&[("zone", "a")], &[("web", 80)]),
            file_checks: [("web".to_string(), ttl("10s"))].into(),
        }
    }

    #[test]
    fn save_load_roundtrip_is_atomic_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRATIONS_FILE);
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &saved()).unwrap();
        let mut newer = saved();
        newer.meta.tags.insert("rack".into(), "7".into());
        save(&path, &newer).unwrap();
        assert_eq!(load(&path).unwrap(), Some(newer));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![REGISTRATIONS_FILE.to_string()],
            "no temp file left"
        );
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REGISTRATIONS_FILE);
        for bad in [
            &b"{\"version\": 1, \"meta\": {"[..],
            br#"{"version": 9, "meta": {}, "file": {}}"#,
            br#"{"version": 1, "meta": {"tags": {"bad key!": "x"}}, "file": {}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = load(&path).unwrap_err();
            assert!(matches!(err, RegistrationsError::Corrupt { .. }), "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains(REGISTRATIONS_FILE) && msg.contains("move it away"),
                "{msg}"
            );
            // Not lost: the file is as it was.
            assert_eq!(std::fs::read(&path).unwrap(), bad);
        }
    }

    #[test]
    fn a_start_merges_as_a_sighup_would() {
        // The config file is unchanged: the API's changes all survive, checks included.
        let file = meta(&[("zone", "a")], &[("web", 80)]);
        let file_checks: Checks = [("web".to_string(), ttl("10s"))].into();
        let s = startup(Some(&saved()), &file, &file_checks);
        assert_eq!(s.meta, saved().meta);
        assert_eq!(s.checks, saved().api_checks);
        assert_eq!(s.api_checks, saved().api_checks);
        // The file changed meanwhile: zone=b and a new pg definition (with its own check)
        // win for their keys; role (API) stays; web (removed by the API, unchanged in the
        // file) stays removed.
        let file2 = meta(&[("zone", "b")], &[("web", 80), ("pg", 6432)]);
        let file_checks2: Checks = [
            ("web".to_string(), ttl("10s")),
            ("pg".to_string(), ttl("5s")),
        ]
        .into();
        let s = startup(Some(&saved()), &file2, &file_checks2);
        assert_eq!(
            s.meta,
            meta(&[("zone", "b"), ("role", "db")], &[("pg", 6432)])
        );
        assert_eq!(s.checks, [("pg".to_string(), ttl("5s"))].into());
        assert!(s.api_checks.is_empty());
        // The same as a reload from the same state.
        assert_eq!(s.meta, merge_meta(&saved().meta, &saved().file, &file2));
        // No persisted file: the config file alone.
        let s = startup(None, &file, &file_checks);
        assert_eq!((s.meta, s.checks), (file, file_checks));
    }
}
