//! The health checks through the CLI: `shoal register` with a check, `shoal services
//! --passing` with health and output, `shoal checks`, `shoal check ID pass`.

use super::*;
use shoal_core::Health;
use std::time::Duration;

async fn cli(
    rig: &Rig,
    format: shoal::cli::Format,
    cmd: shoal::cli::ClientCommand,
) -> (bool, String) {
    common::cli_at(&rig.api_socket(0), format, cmd).await
}

/// `shoal register` with a check, `shoal services --passing` shows health and output,
/// `shoal checks`, `shoal check ID pass`.
#[tokio::test]
async fn cli_registers_checks_and_shows_health() {
    use shoal::cli::health::{RegisterArgs, TtlAction};
    use shoal::cli::{ClientCommand, Format};
    let rig = Rig::start(1).await;
    let target = HttpTarget::start("127.0.0.1:0".parse().unwrap(), 200, false).await;
    let (ok, out) = cli(
        &rig,
        Format::Table,
        ClientCommand::Register(RegisterArgs {
            id: None,
            service: format!("web:{}", target.addr.port()),
            tags: vec!["v=1".into()],
            checks: vec![r#"{"id":"app","ttl":"1h","initial_status":"warning"}"#.into()],
            http: Some(format!("http://{}/", target.addr)),
            tcp: None,
            ttl: None,
            interval: Some("200ms".into()),
            timeout: None,
        }),
    )
    .await;
    assert!(ok && out.contains("with 2 check(s)"), "{out}");
    // The ttl check starts as warning: the service is warning (its worst check).
    wait_until(Duration::from_secs(5), "web warning", || {
        rig.health_everywhere("web", "n0", Health::Warning)
    })
    .await;
    let (ok, out) = cli(
        &rig,
        Format::Table,
        ClientCommand::Check {
            id: "app".into(),
            action: TtlAction::Pass,
            note: Some("ready".into()),
        },
    )
    .await;
    assert!(ok && out.contains("app: passing"), "{out}");
    wait_until(Duration::from_secs(5), "web passing", || {
        rig.health_everywhere("web", "n0", Health::Passing)
    })
    .await;
    let services = |passing| ClientCommand::Services {
        name: Some("web".into()),
        passing,
    };
    let (_, out) = cli(&rig, Format::Table, services(true)).await;
    assert!(out.contains("HEALTH") && out.contains("passing"), "{out}");
    // The output of the first check with the worst status (all pass: the ttl's note).
    assert!(out.contains("ready"), "the output column: {out}");
    let (_, out) = cli(&rig, Format::Table, ClientCommand::Checks).await;
    assert!(
        out.contains("service:web") && out.contains("app") && out.contains("ttl"),
        "{out}"
    );
    // The server stops: the only instance is critical, held so that web is never empty.
    target.stop().await;
    wait_until(Duration::from_secs(5), "web critical", || {
        rig.health_everywhere("web", "n0", Health::Critical)
    })
    .await;
    let (_, out) = cli(&rig, Format::Table, services(true)).await;
    assert!(
        out.contains("critical (held)") && out.contains("HEALTH GUARD:"),
        "{out}"
    );
    let (_, out) = cli(&rig, Format::Json, services(true)).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["web"][0]["health"], "critical");
    assert!(v["web"][0]["health_held"]
        .as_str()
        .unwrap()
        .contains("never empty"));
    // Bad input is refused before anything is sent.
    let (ok, out) = cli(
        &rig,
        Format::Table,
        ClientCommand::Register(RegisterArgs {
            id: None,
            service: "web".into(),
            tags: vec![],
            checks: vec![],
            http: None,
            tcp: None,
            ttl: None,
            interval: None,
            timeout: None,
        }),
    )
    .await;
    assert!(!ok && out.contains("NAME:PORT"), "{out}");
    rig.stop().await;
}
