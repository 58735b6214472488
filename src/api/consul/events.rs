//! Consul's user event routes on the Consul-compatible API: `PUT /v1/event/fire/{name}`
//! (the body is the payload) and `GET /v1/event/list[?name=]`, in Consul's shapes (`ID`,
//! `Name`, `Payload` in base64, `NodeFilter`, `ServiceFilter`, `TagFilter`, `Version`,
//! `LTime`).
//!
//! The only command this API takes: it listens on TCP, so a fire needs the agent's API token
//! (`X-Consul-Token`, `Authorization: Bearer` or `?token=`), as every command on a TCP
//! listener does; without `api_token_file` it is refused. Must not decide anything: the core
//! spreads and lists events (`core::fleet`).

use super::*;
use axum::body::Bytes;
use base64::Engine;
use shoal_core::UserEventView;

/// An event in Consul's shape.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConsulEvent {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    /// base64, or null when empty (as Consul).
    payload: Option<String>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u32,
    #[serde(rename = "LTime")]
    ltime: u64,
}

impl ConsulEvent {
    fn of(e: &UserEventView) -> Self {
        ConsulEvent {
            // Consul's IDs are UUIDs: ours, shaped as one.
            id: format!(
                "00000000-0000-0000-{:04x}-{:012x}",
                (e.id >> 48) & 0xffff,
                e.id & 0xffff_ffff_ffff
            ),
            name: e.name.clone(),
            payload: (!e.payload.is_empty())
                .then(|| base64::engine::general_purpose::STANDARD.encode(e.payload.as_bytes())),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: e.ltime,
        }
    }
}

/// A command on this TCP listener: no web page, and the API token.
fn check_command(st: &ApiState, headers: &axum::http::HeaderMap, uri: &Uri) -> HttpResult<()> {
    if headers.contains_key(header::ORIGIN) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "refused: the request carries an Origin header (it comes from a web page)",
        ));
    }
    let Some(token) = st.shared.api_token.get() else {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "this TCP listener takes commands only with an API token, and none is configured: \
             fire events through the agent's socket (`shoal event`, PUT /v1/event/NAME), or \
             set api_token_file",
        ));
    };
    let header_token = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_string())
    };
    let given = header_token("x-consul-token")
        .or_else(|| header_token("authorization"))
        .or_else(|| {
            query_pairs(uri)
                .into_iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v)
        })
        .unwrap_or_default();
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "firing an event needs the agent's API token: send X-Consul-Token",
        ));
    }
    Ok(())
}

pub(super) async fn fire(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    uri: Uri,
    body: Bytes,
) -> HttpResult<Response> {
    check_command(&st, &headers, &uri)?;
    let dc = datacenter(&st.shared.lock());
    Query::parse(&uri, &dc)?;
    for (k, v) in query_pairs(&uri) {
        if matches!(k.as_str(), "node" | "service" | "tag") && !v.is_empty() {
            return Err(HttpError::bad_request(format!(
                "{k}= filters on events are not supported: every member receives the event; \
                 its handlers filter by name (docs/events.md), or use a query"
            )));
        }
    }
    let e = st
        .shared
        .with_node(|node, now| node.user_event(now, &name, body.to_vec(), true))?;
    let v = view(&st.shared.lock());
    Ok(answer(&v, &ConsulEvent::of(&e)))
}

pub(super) async fn list(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    let name = query_pairs(&uri)
        .into_iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v);
    let events: Vec<ConsulEvent> = st
        .shared
        .lock()
        .recent_events()
        .iter()
        .filter(|r| name.as_ref().is_none_or(|n| *n == r.event.name))
        .map(|r| ConsulEvent::of(&r.event))
        .collect();
    Ok(answer(&v, &events))
}
