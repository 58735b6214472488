//! Errors of the local API: `ApiError` (starting and binding the server) and `HttpError`
//! (an error answer: a status and a message that says what was wrong and what to do, sent as
//! JSON `{"error": "..."}`).
//!
//! Owns the mapping from core errors (`NodeError`, `MetaError`) to HTTP statuses, and the
//! middleware that turns any non-JSON error answer (axum's own 405, extractor rejections) into
//! the JSON shape. Must not decide anything about membership.

use crate::api::types::ErrorBody;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shoal_core::NodeError;
use std::path::PathBuf;
use thiserror::Error;

/// Why the API server could not start.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("another agent is using {0}: stop it first, or give this one another --api path")]
    SocketInUse(PathBuf),
    #[error("{0} exists and is not a socket: remove it or choose another --api path")]
    NotASocket(PathBuf),
    #[error("cannot bind the API socket {path}: {source}")]
    BindUnix {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the API address {addr}: {source}")]
    BindTcp {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP API address {0} is not a loopback address: the API listens on 127.0.0.0/8 or ::1 unless the operator sets listen_remote = true (--listen-remote) with an API token (--api-token-file)")]
    NotLoopback(std::net::SocketAddr),
    #[error("the HTTP API would listen on {0} for other hosts (listen_remote) without an API token: anyone reaching it could run commands; give --api-token-file (trust.api_token_file)")]
    RemoteWithoutToken(std::net::SocketAddr),
    #[error("no API endpoint configured: give a Unix socket path, a loopback address, or both")]
    NothingToServe,
    #[error("API bounds: {0}")]
    Limits(String),
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is shutting down and accepts no more commands; retry once it is back",
        )
    }
}

impl From<NodeError> for HttpError {
    fn from(e: NodeError) -> Self {
        let status = match &e {
            NodeError::Left | NodeError::ForceLeave(_) => StatusCode::CONFLICT,
            NodeError::NoSuchService(_) => StatusCode::NOT_FOUND,
            NodeError::AmbiguousService { .. } => StatusCode::CONFLICT,
            NodeError::Meta(_) => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::Fleet(f) => match f {
                shoal_core::FleetError::PayloadTooLarge { .. }
                | shoal_core::FleetError::AnswerTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                shoal_core::FleetError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                shoal_core::FleetError::NoSuchQuery(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            },
            _ => StatusCode::BAD_REQUEST,
        };
        HttpError::new(status, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        json_error(self.status, &self.message)
    }
}

/// A JSON error answer.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody {
        error: message.to_string(),
    })
    .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Middleware: any 4xx/5xx answer that is not JSON yet (axum's 405, a path or query
/// rejection, a body over the limit) is rewritten as `{"error": "..."}` with a message.
pub async fn json_errors(req: Request<Body>, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/json"))
        .unwrap_or(false);
    if is_json {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => match &allow {
            Some(a) => format!("{method} is not allowed on {path}; use one of: {a}"),
            None => format!("{method} is not allowed on {path}"),
        },
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "request body is too large: the limit is {} KiB",
                super::MAX_BODY / 1024
            )
        }
        _ if text.is_empty() => format!(
            "{} on {method} {path}",
            status.canonical_reason().unwrap_or("error")
        ),
        _ => format!("{text} ({method} {path})"),
    };
    let mut out = json_error(status, &message);
    if let Some(a) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, a.clone());
    }
    out
}
