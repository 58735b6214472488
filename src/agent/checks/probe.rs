//! Runs one probe of an `http`, `tcp` or `exec` check, bounded by its timeout, and says what
//! it found: a status and an output.
//!
//! http: `GET` (hyper, one connection, `Connection: close`), 2xx passing, 429 warning, else
//! critical; tcp: a connect; exec: argv run directly (no shell), exit 0 passing, 1 warning,
//! else critical, stdout and stderr captured up to `MAX_OUTPUT` bytes, the child killed when
//! the timeout expires. Everything is async: a probe never blocks the event loop. Must not
//! decide the check's status (the damper does).

use super::damper::{bounded, MAX_OUTPUT};
use super::spec::CheckKind;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use shoal_core::Health;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Runs one probe of `kind` (not `ttl`: it has nothing to run) within `timeout`.
pub async fn probe(kind: &CheckKind, timeout: Duration) -> (Health, String) {
    let run = async {
        match kind {
            CheckKind::Http(uri) => http(uri).await,
            CheckKind::Tcp(addr) => tcp(*addr).await,
            CheckKind::Exec(argv) => exec(argv).await,
            CheckKind::Ttl(_) => (Health::Critical, "a ttl check is not probed".into()),
        }
    };
    // Dropping an exec probe's future drops its child, which kills it (`kill_on_drop`).
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => (
            Health::Critical,
            format!(
                "{} check timed out after {} ms",
                kind.word(),
                timeout.as_millis()
            ),
        ),
    }
}

async fn tcp(addr: SocketAddr) -> (Health, String) {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => (Health::Passing, format!("TCP connect {addr}: success")),
        Err(e) => (Health::Critical, format!("TCP connect {addr}: {e}")),
    }
}

async fn resolve(uri: &hyper::Uri) -> Result<SocketAddr, String> {
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

async fn http(uri: &hyper::Uri) -> (Health, String) {
    match http_get(uri).await {
        Ok((status, body)) => {
            let health = if status.is_success() {
                Health::Passing
            } else if status.as_u16() == 429 {
                Health::Warning
            } else {
                Health::Critical
            };
            let body = body.trim();
            let out = if body.is_empty() {
                format!("HTTP GET {uri}: {status}")
            } else {
                format!("HTTP GET {uri}: {status}: {body}")
            };
            (health, out)
        }
        Err(e) => (Health::Critical, format!("HTTP GET {uri}: {e}")),
    }
}

async fn http_get(uri: &hyper::Uri) -> Result<(hyper::StatusCode, String), String> {
    let addr = resolve(uri).await?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "shoal-health-check")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = send.send_request(req).await;
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Err(e.to_string());
        }
    };
    let status = res.status();
    // Read at most MAX_OUTPUT bytes of the body.
    let mut body = res.into_body();
    let mut buf = Vec::new();
    while buf.len() < MAX_OUTPUT && !body.is_end_stream() {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            _ => break,
        }
    }
    driver.abort();
    buf.truncate(MAX_OUTPUT);
    Ok((status, String::from_utf8_lossy(&buf).into_owned()))
}

async fn exec(argv: &[String]) -> (Health, String) {
    let Some((prog, args)) = argv.split_first() else {
        return (Health::Critical, "exec check without a program".into());
    };
    let mut child = match tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (Health::Critical, format!("cannot run {prog}: {e}")),
    };
    let out = read_bounded(child.stdout.take());
    let err = read_bounded(child.stderr.take());
    let (out, err) = tokio::join!(out, err);
    let status = match child.wait().await {
        Ok(s) => s,
        Err(e) => return (Health::Critical, format!("{prog}: {e}")),
    };
    let mut text = out;
    if !err.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&err);
    }
    let text = bounded(text, MAX_OUTPUT);
    let health = match status.code() {
        Some(0) => Health::Passing,
        Some(1) => Health::Warning,
        _ => Health::Critical,
    };
    let text = if text.trim().is_empty() {
        match status.code() {
            Some(c) => format!("{prog} exited with {c}"),
            None => format!("{prog} was killed by a signal"),
        }
    } else {
        text
    };
    (health, text)
}

/// Reads up to `MAX_OUTPUT` bytes, then keeps draining (so the child never blocks on a full
/// pipe) without keeping more.
async fn read_bounded(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
