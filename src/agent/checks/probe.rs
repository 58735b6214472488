//! Runs one probe of an `http`, `tcp` or `exec` check, bounded by its timeout, and says what
//! it found: a status and an output.
//!
//! http: `GET` (hyper, one connection, `Connection: close`; over TLS for an `https://` URL,
//! configured by `tls`), 2xx passing, 429 warning, else critical; tcp: a connect; exec: argv run directly (no shell), exit 0 passing, 1 warning,
//! else critical, stdout and stderr captured up to `MAX_OUTPUT` bytes, the child killed when
//! the timeout expires. Everything is async: a probe never blocks the event loop. Must not
//! decide the check's status (the damper does).

use super::spec::{CheckKind, HttpCheck};
use super::tls;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use shoal_core::Health;
use shoal_core::{bounded, MAX_OUTPUT};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_rustls::rustls::{pki_types::ServerName, ClientConfig};

/// Runs one probe of `kind` (not `ttl`: it has nothing to run) within `timeout`.
pub async fn probe(kind: &CheckKind, timeout: Duration) -> (Health, String) {
    let run = async {
        match kind {
            CheckKind::Http(check) => http(check).await,
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
    let port = uri
        .port_u16()
        .unwrap_or(if is_https(uri) { 443 } else { 80 });
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

fn is_https(uri: &hyper::Uri) -> bool {
    uri.scheme_str() == Some("https")
}

async fn http(check: &HttpCheck) -> (Health, String) {
    let tls = is_https(&check.uri).then(|| tls::client_config(check.tls_skip_verify));
    http_with(&check.uri, tls).await
}

/// An HTTP check of `uri`, over TLS with `tls` when given (an `https://` URL).
async fn http_with(uri: &hyper::Uri, tls: Option<Arc<ClientConfig>>) -> (Health, String) {
    match http_get(uri, tls).await {
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

async fn http_get(
    uri: &hyper::Uri,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(hyper::StatusCode, String), String> {
    let addr = resolve(uri).await?;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let Some(tls) = tls else {
        return get_over(uri, stream).await;
    };
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    get_over(uri, stream).await
}

/// `GET uri` over `io` (plain TCP or TLS): the status and up to `MAX_OUTPUT` bytes of body.
async fn get_over<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    uri: &hyper::Uri,
    io: S,
) -> Result<(hyper::StatusCode, String), String> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::{RootCertStore, ServerConfig};

    /// A CA made for the test, and a TLS server on loopback with a certificate it signed
    /// (for `localhost` and 127.0.0.1) answering `200 ok` to every request.
    async fn tls_server() -> (SocketAddr, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let mut config = ServerConfig::builder_with_provider(Arc::new(
            #[allow(deprecated)]
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for _ in 0..32 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to do.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 2048];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (addr, ca_cert.der().clone())
    }

    #[tokio::test]
    async fn https_checks_verify_the_certificate_unless_told_not_to() {
        let (addr, ca) = tls_server().await;
        let url: hyper::Uri = format!("https://localhost:{}/health", addr.port())
            .parse()
            .unwrap();
        // Verified against a store holding the CA: passing, over TLS.
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let (health, out) = http_with(&url, Some(tls::with_roots(Arc::new(roots)))).await;
        assert_eq!(health, Health::Passing, "{out}");
        assert!(out.contains("200 OK: ok"), "{out}");
        // The system's roots do not know the test's CA: critical, saying why.
        let check = |skip| {
            CheckKind::Http(HttpCheck {
                uri: url.clone(),
                tls_skip_verify: skip,
            })
        };
        let (health, out) = probe(&check(false), Duration::from_secs(5)).await;
        assert_eq!(health, Health::Critical, "{out}");
        assert!(
            out.contains("TLS handshake") && out.contains("certificate"),
            "{out}"
        );
        // tls_skip_verify: any certificate.
        let (health, out) = probe(&check(true), Duration::from_secs(5)).await;
        assert_eq!(health, Health::Passing, "{out}");
        // A plain HTTP request to the TLS port is not mistaken for a passing check.
        let plain: hyper::Uri = format!("http://127.0.0.1:{}/", addr.port())
            .parse()
            .unwrap();
        let (health, _) = http_with(&plain, None).await;
        assert_eq!(health, Health::Critical);
    }
}
