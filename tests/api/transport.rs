//! Where the API listens and how clients reach it: the Unix socket's lifecycle (stale, live,
//! removed), loopback-only TCP, the client's hint on a missing socket, and the CLI's exit
//! codes and JSON output.

use super::*;
use shoal::agent::shared::AgentShared;
use shoal::api::{self, ApiError, ApiOptions};
use shoal::cli::{self, ClientArgs, ClientCommand, Format};
use shoal::client::{Client, ClientError};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[tokio::test]
async fn socket_lifecycle_stale_live_and_removal() {
    let mut f = fixture().await;
    // A live socket is refused.
    let shared2 = Arc::new(AgentShared::new(node("n1", 17002), Instant::now()));
    let opts = ApiOptions {
        unix: Some(f.path.clone()),
        http: None,
        ..Default::default()
    };
    match api::spawn(shared2.clone(), opts.clone()).await {
        Err(ApiError::SocketInUse(p)) => assert_eq!(p, f.path),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second agent bound a live socket"),
    }
    // Shutdown removes the file.
    f.handle.take().unwrap().shutdown().await;
    assert!(!f.path.exists());
    // A stale socket file (nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&f.path).unwrap());
    assert!(f.path.exists());
    let h = api::spawn(shared2, opts).await.unwrap();
    assert_eq!(f.client.local().await.unwrap().member.name, "n1");
    h.shutdown().await;
    // A regular file is not ours to remove.
    std::fs::write(&f.path, b"x").unwrap();
    let r = api::spawn(
        f.shared.clone(),
        ApiOptions {
            unix: Some(f.path.clone()),
            http: None,
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(r, Err(ApiError::NotASocket(_))));
}

#[tokio::test]
async fn loopback_tcp_only() {
    let shared = Arc::new(AgentShared::new(node("n2", 17003), Instant::now()));
    let r = api::spawn(
        shared.clone(),
        ApiOptions {
            unix: None,
            http: Some("0.0.0.0:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(r, Err(ApiError::NotLoopback(_))));
    let h = api::spawn(
        shared,
        ApiOptions {
            unix: None,
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let addr = h.http_addr().unwrap();
    let c = Client::parse(&format!("http://{addr}")).unwrap();
    assert_eq!(c.local().await.unwrap().member.name, "n2");
    h.shutdown().await;
}

#[tokio::test]
async fn client_explains_a_missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::parse(&format!("unix:{}/none.sock", dir.path().display())).unwrap();
    let e = c.local().await.unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("is the agent running?") && msg.contains("SHOAL_API"),
        "{msg}"
    );
}

async fn run_cli(api: &str, format: Format, cmd: ClientCommand) -> (ExitCode, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = cli::run_with(
        ClientArgs {
            api: api.to_string(),
            format,
        },
        cmd,
        &mut out,
        &mut err,
    )
    .await
    .unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn cli_members_json_is_an_array_and_errors_exit_non_zero() {
    let f = fixture().await;
    let api = format!("unix:{}", f.path.display());
    let members = || ClientCommand::Members {
        status: vec![],
        name: None,
        tag: vec![],
        why: false,
    };
    let (code, out, _) = run_cli(&api, Format::Json, members()).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arr = v.as_array().expect("members --format json prints an array");
    for key in ["name", "addr", "status", "tags", "services"] {
        assert!(arr[0].get(key).is_some(), "lacks {key}");
    }
    let (code, out, _) = run_cli(&api, Format::Table, members()).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let header = out.lines().next().unwrap();
    for col in ["NAME", "ADDR", "STATUS", "TAGS", "SERVICES"] {
        assert!(header.contains(col), "{out}");
    }
    assert!(out.contains("n0") && out.contains("role=test"), "{out}");

    let (code, out, _) = run_cli(
        &api,
        Format::Table,
        ClientCommand::Tags {
            set: vec!["a=1".into()],
            delete: vec!["role".into()],
        },
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out.trim(), "a=1");

    let (code, _, err) = run_cli(
        &api,
        Format::Table,
        ClientCommand::Members {
            status: vec!["zombie".into()],
            name: None,
            tag: vec![],
            why: false,
        },
    )
    .await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        err.contains("unknown status") && err.contains("HTTP 400"),
        "{err}"
    );

    let (code, _, err) = run_cli(
        &api,
        Format::Table,
        ClientCommand::Tags {
            set: vec!["novalue".into()],
            delete: vec![],
        },
    )
    .await;
    assert_ne!(code, ExitCode::SUCCESS);
    assert!(err.contains("KEY=VALUE"), "{err}");

    let (code, out, _) = run_cli(&api, Format::Table, ClientCommand::Info).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("guard:") && out.contains("normal"), "{out}");

    let (code, out, _) = run_cli(
        &api,
        Format::Json,
        ClientCommand::Guard {
            action: None,
            all: false,
        },
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["guard"]["state"], "normal");

    let (code, out, _) = run_cli(&api, Format::Table, ClientCommand::Leave).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(out.contains("left the cluster"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:{}/none.sock", dir.path().display());
    let (code, _, err) = run_cli(&missing, Format::Table, members()).await;
    assert_eq!(code, ExitCode::FAILURE);
    assert!(err.contains("is the agent running?"), "{err}");
}
