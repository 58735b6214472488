//! What the packaging relies on, checked against the real binary: the API socket's group
//! reaching the socket in the default place (the data directory), and the Kubernetes
//! DaemonSet as written (parsed, its structure asserted, its configuration loaded).
//!
//! Owns these tests and their small helpers (spawning `shoal agent`, waiting for its API);
//! must not test what the API answers (tests/api does).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A `shoal agent` child, killed when dropped.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `shoal agent` on loopback (port 0, profile local) with `extra` flags.
fn agent(data: &Path, extra: &[&str]) -> AgentProc {
    let child = Command::new(SHOAL)
        .args([
            "agent",
            "--name",
            "pkg",
            "--bind",
            "127.0.0.1:0",
            "--profile",
            "local",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(["--log-level", "warn"])
        .args(extra)
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn shoal agent");
    AgentProc(child)
}

/// Runs `shoal info` against `api`, as this process or as `uid:gid`.
fn info(api: &str, as_user: Option<(u32, u32)>) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(SHOAL);
    c.args(["info", "--api", api]).env_remove("SHOAL_API_TOKEN");
    if let Some((uid, gid)) = as_user {
        c.uid(uid).gid(gid);
    }
    c.output().expect("run shoal info")
}

/// Polls `shoal info` until the agent answers (at most 20 s).
fn wait_for_api(api: &str, child: &mut AgentProc) {
    let start = Instant::now();
    for _ in 0..400 {
        if info(api, None).status.success() {
            return;
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            panic!("the agent exited with {st} before its API answered");
        }
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent's API at {api} did not answer within 20 s");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `socket_group` with the socket at its default place, `<data_dir>/shoal.sock`: a user of
/// that group (and no other) reaches the API, and the keyring stays 0600. As root the test
/// runs `shoal info` as nobody:nogroup (the socket group) and as another uid and gid; as
/// another user it checks the modes and group only.
#[test]
fn socket_group_reaches_the_socket_in_the_data_directory() {
    let root = tempfile::tempdir().unwrap();
    // The path down to the data directory must be searchable by the other users.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data: PathBuf = root.path().join("data");
    let probe = root.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    let is_root = std::fs::metadata(&probe).unwrap().uid() == 0;
    let gid = if is_root {
        65534
    } else {
        std::fs::metadata(&probe).unwrap().gid()
    };
    let cfg = root.path().join("shoal.toml");
    std::fs::write(&cfg, format!("[api_server]\nsocket_group = \"{gid}\"\n")).unwrap();
    let key =
        String::from_utf8(Command::new(SHOAL).arg("keygen").output().unwrap().stdout).unwrap();
    let mut a = agent(
        &data,
        &["--config", cfg.to_str().unwrap(), "--encrypt", key.trim()],
    );
    let sock = data.join("shoal.sock");
    let api = format!("unix:{}", sock.display());
    wait_for_api(&api, &mut a);
    assert_eq!(
        mode(&data),
        0o710,
        "the data directory: search for the group only"
    );
    assert_eq!(std::fs::metadata(&data).unwrap().gid(), gid);
    assert_eq!(mode(&sock), 0o660);
    assert_eq!(std::fs::metadata(&sock).unwrap().gid(), gid);
    assert_eq!(mode(&data.join("keyring")), 0o600);
    if !is_root {
        eprintln!("not root: the connection as another user is not tried");
        return;
    }
    let member = info(&api, Some((65534, 65534)));
    assert!(
        member.status.success(),
        "a member of the socket group cannot reach the API: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert!(String::from_utf8_lossy(&member.stdout).contains("pkg"));
    let stranger = info(&api, Some((65533, 65533)));
    assert!(
        !stranger.status.success(),
        "a user outside the group reached the API"
    );
    // The group can reach the socket by name, and read nothing else.
    use std::os::unix::process::CommandExt;
    let list = Command::new("ls")
        .arg(&data)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        !list.status.success(),
        "the group can list the data directory"
    );
    let read = Command::new("cat")
        .arg(data.join("keyring"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!read.status.success(), "the group can read the keyring");
}
