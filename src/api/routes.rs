//! The routes of the local API.
//!
//! Owns the router (which path goes to which handler), the middleware (shutdown, API token)
//! and the fallback. The handlers live in child modules, one resource each: `members`,
//! `services` (and tags), `guard`, `stats` (and `/metrics`), `stream` (the watch stream),
//! `coords` (network coordinates and estimated RTTs);
//! request parsing is `request`'s (the keyring's routes are `api::keys`, the checks'
//! `api::health`). Handlers read the node under its lock (never across an await) and run
//! commands through `AgentShared::with_node`, which wakes the event loop to flush. Must not
//! drain the node's outputs (datagrams, timers, events): that is the event loop's job.

use crate::api::error::{json_error, json_errors, HttpError};
pub(crate) use crate::api::state::ApiState;
use crate::api::types::*;
use crate::api::MAX_BODY;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest a blocking query may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long `POST /v1/leave` waits for the event loop to confirm the leave was sent.
pub const LEAVE_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Whether a `Host` header names this machine's loopback: `localhost` (or a name under
/// `.localhost`), an address of 127.0.0.0/8 or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let lower = name.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

type HttpResult<T> = Result<T, HttpError>;

pub(crate) mod coords;
mod events;
mod guard;
mod members;
mod request;
mod services;
mod stats;
mod stream;
use coords::{coordinates, rtt_between, rtt_from_agent};
use events::*;
use guard::*;
pub(crate) use members::snapshot;
use members::*;
use request::*;
pub(crate) use request::{parse_wait, shutdown_signal, wait_for_index};
use services::*;
use stats::*;
use stream::*;

/// Builds the router around `state`.
pub(crate) fn build(state: ApiState) -> Router {
    Router::new()
        .route("/v1/members", get(members))
        .route("/v1/members/{name}", get(member))
        .route("/v1/members/{name}/history", get(member_history))
        .route("/v1/self", get(local))
        .route("/v1/services", get(services).put(register_service))
        .route(
            "/v1/services/{name}",
            get(service).delete(deregister_service),
        )
        .route("/v1/tags", put(set_tags))
        .route("/v1/tags/{key}", delete(delete_tag))
        .route("/v1/join", post(join))
        .route("/v1/leave", post(leave))
        .route("/v1/force-leave/{name}", post(force_leave))
        .route("/v1/guard", get(guard))
        .route("/v1/guard/freeze", post(guard_freeze))
        .route("/v1/guard/thaw", post(guard_thaw))
        .route("/v1/watch", get(watch_stream))
        .route("/v1/event/{name}", put(fire_event))
        .route("/v1/events", get(list_events))
        .route("/v1/query/{name}", post(run_query))
        .route("/v1/stats", get(stats))
        .route("/v1/coordinates", get(coordinates))
        .route("/v1/rtt/{a}", get(rtt_from_agent))
        .route("/v1/rtt/{a}/{b}", get(rtt_between))
        .route(
            "/v1/keys",
            get(crate::api::keys::list).post(crate::api::keys::change),
        )
        .route("/v1/keys/members", get(crate::api::member_keys::list))
        .route(
            "/v1/keys/forget/{name}",
            post(crate::api::member_keys::forget),
        )
        .route("/v1/reports", post(crate::api::reports::post))
        .route("/v1/checks", get(crate::api::health::list))
        .route(
            "/v1/checks/{id}/{action}",
            put(crate::api::health::ttl_update),
        )
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(from_fn_with_state(
            state.clone(),
            crate::api::wallclock::add_wall_times,
        ))
        .layer(from_fn_with_state(state.clone(), refuse_when_shutting_down))
        .layer(from_fn(json_errors))
        .with_state(state)
}

// ----- middleware and fallback --------------------------------------------------------------

async fn refuse_when_shutting_down(
    State(st): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let is_command = !matches!(*req.method(), Method::GET | Method::HEAD);
    if is_command && st.shared.shutting_down.load(Ordering::Relaxed) {
        return HttpError::unavailable().into_response();
    }
    // A browser sends `Origin` with every request that is not a GET or HEAD; the CLI, curl
    // and apps do not. A web page must not drive the agent (cross-site request forgery).
    if is_command && req.headers().contains_key(header::ORIGIN) {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "refused: the request carries an Origin header (it comes from a web page); the \
             agent takes commands only from programs on this host (the CLI, curl, apps)",
        )
        .into_response();
    }
    if st.loopback_host {
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("?"));
        if let Some(h) = host.filter(|h| !is_loopback_host(h)) {
            return HttpError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "refused: Host {h:?} is not a loopback name (a web page reaching this \
                     loopback listener through DNS rebinding?); ask for localhost or 127.0.0.1"
                ),
            )
            .into_response();
        }
    }
    if is_command && st.tcp && st.shared.api_token.get().is_none() {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "this TCP listener takes commands only with an API token, and none is configured: \
             send commands through the agent's Unix socket, or set api_token_file \
             (reads are open here)",
        )
        .into_response();
    }
    if let (true, Some(token)) = (is_command, st.shared.api_token.get()) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared in time independent of where they differ.
        let same = given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return HttpError::new(
                StatusCode::UNAUTHORIZED,
                "this agent takes commands only with its API token: send \
                 `Authorization: Bearer <token>` (the CLI reads SHOAL_API_TOKEN or \
                 SHOAL_API_TOKEN_FILE)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn not_found(method: Method, uri: Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        &format!(
            "no route for {method} {}: the API serves /v1/members, /v1/self, /v1/services, \
             /v1/tags, /v1/join, /v1/leave, /v1/force-leave, /v1/guard, /v1/watch, /v1/event, \
             /v1/events, /v1/query, /v1/stats, /v1/keys, \
             /v1/checks, /v1/reports and /metrics",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod host_tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST:7947",
            "api.localhost",
            "127.0.0.1",
            "127.3.2.1:8500",
            "[::1]",
            "[::1]:7947",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:7947",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]:1",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
