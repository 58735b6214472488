//! Why a member went down, and who sends datagrams this agent refuses, end to end with real
//! agents on 127.0.0.1 (profile `local`): a killed agent is served down with its cause in the
//! API, the watch stream, the log and `shoal explain` / `shoal members --why`; an agent with
//! another key, and one with another cluster label, are named in the running agent's log and
//! in `/v1/stats` within seconds.
//!
//! The log is captured by a process-wide `tracing` subscriber writing into a buffer (the
//! agents run in this process); each test looks only for lines naming its own agents'
//! addresses. Every wait is a bounded poll (`wait_until`); no sleep decides an outcome.

#[path = "../common/mod.rs"]
mod common;

use common::{cli_at, wait_until, wait_until_async, Cluster};
use shoal::agent::datadir::{generate_key, process_key};
use shoal::agent::Agent;
use shoal::api::types::WatchLine;
use shoal::cli::{ClientCommand, Format};
use shoal::config::{AgentArgs, Config};
use shoal_core::{CauseKind, DropReason, EventKind, MemberChange, Profile, ServedStatus};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Everything logged in this process (text, no colours).
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || Capture(b.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured lines that contain every one of `needles`.
fn log_lines(needles: &[&str]) -> Vec<String> {
    let buf = captured().lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Kill one agent of 3: both others serve it down with a cause that names the suspicion and
/// its confirmations, in the API, in the watch stream and in the log; `shoal explain` prints
/// its transitions and `shoal members --why` the cause.
#[tokio::test]
async fn a_killed_agent_is_down_with_its_cause_everywhere() {
    captured();
    let mut c = Cluster::start(3).await;
    c.converge_fully(Duration::from_secs(10)).await;
    let api0 = c.serve_api(0).await;
    let api1 = c.serve_api(1).await;
    let mut watch = api0.watch(None).await.expect("watch stream");
    let dead = c.addrs[2];
    c.kill(2).await;
    wait_until(Duration::from_secs(15), "n2 down on n0 and n1", || {
        [0, 1]
            .iter()
            .all(|i| c.status(*i, "n2") == Some(ServedStatus::Down))
    })
    .await;

    // The API: a cause on the member, the same on both observers' kind of evidence.
    let mut confirmed = 0;
    for (i, api) in [(0, &api0), (1, &api1)] {
        let m = api.member("n2").await.expect("member").member;
        assert_eq!(m.status, ServedStatus::Down);
        let cause = m
            .cause
            .unwrap_or_else(|| panic!("n{i} serves n2 without a cause"));
        assert!(
            matches!(
                cause.reason,
                CauseKind::SuspicionTimeout | CauseKind::DownNotice
            ),
            "n{i}: {cause:?}"
        );
        assert!(cause.text.contains("no refutation"), "{}", cause.text);
        assert!(
            cause.last_heard_ms.is_some(),
            "n{i} never heard n2: {cause:?}"
        );
        let other = if i == 0 { "n1" } else { "n0" };
        if cause.confirmations > 0 {
            assert_eq!(cause.accusers, vec![other.to_string()], "n{i}: {cause:?}");
            confirmed += 1;
        }
        // Its history: suspected first (by its own probe or the cluster's word), then down.
        let h = api.member_history_json("n2").await.expect("history")["history"].clone();
        let tos: Vec<&str> = h
            .as_array()
            .expect("a list")
            .iter()
            .map(|t| t["to"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(tos.last(), Some(&"down"), "n{i}: {h}");
        assert!(
            h.as_array().unwrap().iter().all(|t| t["at"].is_string()),
            "wall-clock times: {h}"
        );
    }
    assert!(confirmed >= 1, "no observer counted the other's accusation");

    // The watch stream: every status change up to the down event carries its cause (the
    // suspicion too), and the down event carries the one the API shows.
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = watch.next().await {
            if let Ok(WatchLine::Event(e)) = line {
                if let EventKind::Member { change, member, .. } = e.kind {
                    if change == MemberChange::Status {
                        assert!(member.cause.is_some(), "no cause: {member:?}");
                    }
                    if member.name == "n2" && member.status == ServedStatus::Down {
                        return Some(member);
                    }
                }
            }
        }
        None
    })
    .await
    .expect("the down event within 5 s")
    .expect("the stream ended");
    let cause = ev.cause.expect("the event carries the cause");
    assert!(cause.text.contains("no refutation"), "{}", cause.text);
    assert_eq!(
        Some(cause),
        api0.member("n2").await.expect("member").member.cause
    );

    // The log: one line for the transition, with the cause.
    let lines = log_lines(&["member down: n2 (", &dead.to_string()]);
    assert!(!lines.is_empty(), "no log line for n2 going down");
    assert!(
        lines.iter().all(|l| l.contains("confirmation")),
        "{lines:?}"
    );

    // The CLI.
    let sock = c.api_socket(0);
    let (ok, out) = cli_at(
        &sock,
        Format::Table,
        ClientCommand::Explain { node: "n2".into() },
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.starts_with(&format!("n2 {dead} is down")), "{out}");
    assert!(
        out.contains("why: ") && out.contains("no refutation"),
        "{out}"
    );
    assert!(
        out.contains("suspect") || out.contains("down_notice"),
        "{out}"
    );
    assert!(out.contains("AT") && out.contains("EVIDENCE"), "{out}");
    let (ok, out) = cli_at(
        &sock,
        Format::Table,
        ClientCommand::Members {
            status: vec![],
            name: Some("n2".into()),
            tag: vec![],
            why: true,
        },
    )
    .await;
    assert!(ok, "{out}");
    let row = out.lines().find(|l| l.starts_with("n2 ")).unwrap_or("");
    assert!(
        row.contains("down") && row.contains("no refutation"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.contains("WHY")), "{out}");
    let (ok, out) = cli_at(
        &sock,
        Format::Json,
        ClientCommand::Explain {
            node: "nobody".into(),
        },
    )
    .await;
    assert!(!ok && out.contains("no member named"), "{out}");
    c.stop().await;
}

fn outsider(name: &str, join: SocketAddr, dir: &Path, key: String, label: &str) -> Config {
    let args = AgentArgs {
        name: Some(name.to_string()),
        bind: Some("127.0.0.1:0".into()),
        join: vec![join.to_string()],
        profile: Some(Profile::Local),
        data_dir: Some(dir.join(name)),
        encrypt: Some(key),
        ..Default::default()
    };
    let mut cfg = Config::load_with_env(&args, &|_| None).expect("valid test config");
    cfg.cluster_label = label.to_string();
    cfg
}

/// An agent with another key, and one with another cluster label, pointed at a running
/// agent: within seconds the running agent's log names each sender with the reason (and
/// what it carried), and `/v1/stats` lists them; and the log stays rate-limited while they
/// keep trying.
#[tokio::test]
async fn a_wrong_key_or_label_is_named_in_the_log_within_seconds() {
    captured();
    let mut c = Cluster::start(1).await;
    let api = c.serve_api(0).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = c.addrs[0];
    let wrong_key = Agent::start(&outsider(
        "intruder",
        seed,
        dir.path(),
        generate_key().unwrap().to_base64(),
        "",
    ))
    .await
    .unwrap();
    let wrong_label = Agent::start(&outsider(
        "stranger",
        seed,
        dir.path(),
        process_key(),
        "other",
    ))
    .await
    .unwrap();
    let (k, l) = (wrong_key.local_addr(), wrong_label.local_addr());
    let key_line = format!("from {k}: cannot authenticate");
    let label_line = format!("from {l}: wrong cluster label");
    let took = wait_until(Duration::from_secs(5), "both named in the log", || {
        !log_lines(&[&key_line, "not in our keyring"]).is_empty()
            && !log_lines(&[&label_line, "their label \"other\""]).is_empty()
    })
    .await;
    assert!(took < Duration::from_secs(3), "took {took:?}");
    wait_until_async(
        Duration::from_secs(5),
        "both listed in /v1/stats",
        || async {
            let s = api.stats().await.expect("stats").stats;
            s.recent_drops
                .iter()
                .any(|d| d.from == k && d.reason == DropReason::WrongKey && d.count > 0)
                && s.recent_drops
                    .iter()
                    .any(|d| d.from == l && d.reason == DropReason::WrongLabel)
        },
    )
    .await;
    // They keep announcing, with a backoff that reaches `rejoin_max` (5 s in the local
    // profile) within seconds: over 6 s each is refused at least once more, and the log names
    // each at most once more (one line per sender and reason every 15 s).
    let before = c.shared[0].lock().stats().dropped_total();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = c.shared[0].lock().stats().dropped_total();
    assert!(
        after >= before + 2,
        "they stopped sending: {before} -> {after}"
    );
    assert_eq!(
        log_lines(&[&key_line]).len(),
        1,
        "{:?}",
        log_lines(&[&key_line])
    );
    assert_eq!(log_lines(&[&label_line]).len(), 1);
    // `shoal info` shows them too.
    let (ok, out) = cli_at(&c.api_socket(0), Format::Table, ClientCommand::Info).await;
    assert!(ok && out.contains(&format!("{k} wrong_key")), "{out}");
    wrong_key.stop().await;
    wrong_label.stop().await;
    c.stop().await;
}
