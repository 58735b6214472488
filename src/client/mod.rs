//! A small async client for the agent's local API, over `unix:PATH` or
//! `http://127.0.0.1:PORT` (hyper 1, one connection per request).
//!
//! Owns endpoint parsing, the HTTP exchange, decoding answers into the API's types
//! (`crate::api::types`; one method per route is in `routes.rs`) and turning error answers and connection failures into a
//! `ClientError` with a message that says what to do. Must not print anything (the CLI does)
//! and must not interpret the membership data.

mod routes;

use crate::api::types::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// How long connecting to the agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read into memory (watch lines are read one by one).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Where the agent's API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port` of a loopback HTTP listener.
    Http(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Http(a) => write!(f, "http://{a}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = ClientError;

    /// `unix:PATH`, `unix://PATH`, a bare absolute path, or `http://HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, ClientError> {
        let bad = || ClientError::BadEndpoint(s.to_string());
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
                return Err(bad());
            }
            return Ok(Endpoint::Http(hostport.to_string()));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        Err(bad())
    }
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("bad API address {0:?}: use unix:/path/to/shoal.sock or http://127.0.0.1:PORT")]
    BadEndpoint(String),
    #[error("cannot connect to the agent API at {endpoint}: {source} (is the agent running? set --api or SHOAL_API)")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent API at {endpoint} did not answer within {secs} s")]
    Timeout { endpoint: String, secs: u64 },
    #[error("HTTP exchange with the agent API failed: {0}")]
    Http(#[from] hyper::Error),
    /// The agent answered with an error status.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("unexpected answer from the agent API: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of an error answer, if the agent answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Filters of `GET /v1/members` (regexes match the whole value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberQuery {
    /// Status words (alive, suspect, held, restarting, left, down); any of them matches.
    pub status: Vec<String>,
    pub name: Option<String>,
    /// `key=REGEX`; all of them must match.
    pub tags: Vec<String>,
}

impl MemberQuery {
    fn append(&self, q: &mut form_urlencoded::Serializer<'_, String>) {
        for s in &self.status {
            q.append_pair("status", s);
        }
        if let Some(n) = &self.name {
            q.append_pair("name", n);
        }
        for t in &self.tags {
            q.append_pair("tag", t);
        }
    }
}

/// A raw answer: status and body.
#[derive(Clone, Debug)]
pub struct RawAnswer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The API client.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

fn path_with(path: &str, q: form_urlencoded::Serializer<'_, String>) -> String {
    let mut q = q;
    let qs = q.finish();
    if qs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{qs}")
    }
}

fn encode_segment(s: &str) -> String {
    // Percent-encode everything but unreserved characters (RFC 3986).
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token for an agent started with `--api-token-file`: `SHOAL_API_TOKEN`, or the contents
/// of the file `SHOAL_API_TOKEN_FILE` names.
fn api_token() -> Option<String> {
    if let Ok(t) = std::env::var("SHOAL_API_TOKEN") {
        if !t.trim().is_empty() {
            return Some(t.trim().to_string());
        }
    }
    let path = std::env::var("SHOAL_API_TOKEN_FILE").ok()?;
    let t = std::fs::read_to_string(path).ok()?;
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Self {
        Client { endpoint }
    }

    /// Parses `unix:PATH` or `http://127.0.0.1:PORT`.
    pub fn parse(api: &str) -> Result<Self, ClientError> {
        Ok(Client::new(api.parse()?))
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn connect(&self) -> Result<Box<dyn Io>, ClientError> {
        let endpoint = self.endpoint.to_string();
        let fut = async {
            match &self.endpoint {
                Endpoint::Unix(p) => UnixStream::connect(p)
                    .await
                    .map(|s| Box::new(s) as Box<dyn Io>),
                Endpoint::Http(a) => TcpStream::connect(a.as_str()).await.map(|s| {
                    let _ = s.set_nodelay(true);
                    Box::new(s) as Box<dyn Io>
                }),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
            Err(_) => Err(ClientError::Timeout {
                endpoint,
                secs: CONNECT_TIMEOUT.as_secs(),
            }),
            Ok(Err(source)) => Err(ClientError::Connect { endpoint, source }),
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// Sends one request and returns the answer with its body unread.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
        let has_body = body.is_some();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost");
        if has_body {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        if let Some(token) = api_token() {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Decode(format!("cannot build the request: {e}")))?;
        Ok(sender.send_request(req).await?)
    }

    /// Sends a request and reads the whole answer, whatever its status (within `timeout`).
    pub async fn raw_with_timeout(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<RawAnswer, ClientError> {
        let fut = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ClientError::Decode(format!("cannot read the answer: {e}")))?
                .to_bytes();
            Ok(RawAnswer {
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: self.endpoint.to_string(),
                secs: timeout.as_secs(),
            })?
    }

    /// Sends a request and reads the whole answer, whatever its status.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawAnswer, ClientError> {
        self.raw_with_timeout(method, path, body, REQUEST_TIMEOUT)
            .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Decode(format!("cannot encode the request: {e}")))?,
            ),
            None => None,
        };
        let ans = self.raw_with_timeout(method, path, body, timeout).await?;
        if !ans.status.is_success() {
            return Err(api_error(&ans));
        }
        serde_json::from_slice(&ans.body)
            .map_err(|e| ClientError::Decode(format!("{e} in the answer to {path}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// A request whose body is raw bytes (an event's or query's payload).
    async fn call_bytes<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let ans = self
            .raw_with_timeout(method, path, Some(body), timeout)
            .await?;
        if !ans.status.is_success() {
            return Err(api_error(&ans));
        }
        serde_json::from_slice(&ans.body)
            .map_err(|e| ClientError::Decode(format!("{e} in the answer to {path}")))
    }

    /// `GET /v1/watch[?index=N]`: a stream of snapshot and event lines.
    pub async fn watch(&self, index: Option<u64>) -> Result<Watch, ClientError> {
        let path = match index {
            Some(i) => format!("/v1/watch?index={i}"),
            None => "/v1/watch".to_string(),
        };
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, &path, None))
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: self.endpoint.to_string(),
                secs: REQUEST_TIMEOUT.as_secs(),
            })??;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(api_error(&RawAnswer {
                status,
                content_type: None,
                body,
            }));
        }
        Ok(Watch {
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        })
    }
}

/// Turns an error answer into `ClientError::Api` (the `error` field, or the raw text).
fn api_error(ans: &RawAnswer) -> ClientError {
    let message = serde_json::from_slice::<ErrorBody>(&ans.body)
        .map(|e| e.error)
        .unwrap_or_else(|_| {
            let t = String::from_utf8_lossy(&ans.body).trim().to_string();
            if t.is_empty() {
                ans.status.canonical_reason().unwrap_or("error").to_string()
            } else {
                t
            }
        });
    ClientError::Api {
        status: ans.status.as_u16(),
        message,
    }
}

/// An open watch stream.
pub struct Watch {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

/// Longest single watch line accepted (a snapshot of a very large cluster).
const MAX_LINE: usize = 64 * 1024 * 1024;

impl Watch {
    /// The next line, or `None` when the agent closed the stream.
    pub async fn next(&mut self) -> Option<Result<WatchLine, ClientError>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                return Some(
                    WatchLine::parse(text)
                        .map_err(|e| ClientError::Decode(format!("bad watch line: {e}"))),
                );
            }
            if self.done {
                return None;
            }
            if self.buf.len() > MAX_LINE {
                self.done = true;
                return Some(Err(ClientError::Decode("watch line too long".into())));
            }
            match self.body.frame().await {
                None => {
                    self.done = true;
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    self.buf.push(b'\n');
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(ClientError::Http(e)));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "unix:/run/shoal.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/shoal.sock".into())
        );
        assert_eq!(
            "unix:///run/shoal.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/run/shoal.sock".into())
        );
        assert_eq!(
            "http://127.0.0.1:8500/".parse::<Endpoint>().unwrap(),
            Endpoint::Http("127.0.0.1:8500".into())
        );
        assert!("http://127.0.0.1".parse::<Endpoint>().is_err());
        assert!("tcp:1".parse::<Endpoint>().is_err());
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }
}

/// The filters and timeout of `shoal query`, as given.
#[derive(Clone, Debug, Default)]
pub struct QueryArgs {
    pub nodes: Vec<String>,
    /// `key=value`.
    pub tags: Vec<String>,
    pub service: Option<String>,
    /// A duration (`5s`, `500ms`).
    pub timeout: Option<String>,
}
