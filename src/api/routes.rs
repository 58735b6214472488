//! The routes of the local API and their handlers.
//!
//! Owns request parsing (query filters, JSON bodies), the blocking query and the watch
//! stream, and the shaping of answers. Reads the node under its lock (never across an await)
//! and runs commands through `AgentShared::with_node`, which wakes the event loop to flush.
//! Must not drain the node's outputs (datagrams, timers, events): that is the event loop's job.

use crate::agent::shared::AgentShared;
use crate::api::error::{json_error, json_errors, HttpError};
use crate::api::metrics::{self, MetricsInput, ALL_STATUSES};
use crate::api::types::*;
use crate::api::MAX_BODY;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use regex::{Regex, RegexBuilder};
use serde::de::DeserializeOwned;
use shoal_core::{Event, Node, ServedStatus, Service, Time};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Longest a blocking query may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long `POST /v1/leave` waits for the event loop to confirm the leave was sent.
pub const LEAVE_FLUSH_WAIT: Duration = Duration::from_secs(2);
/// How long resolving one join address may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Compiled size limit of a filter regex (they come from local users, but stay cheap).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub shared: Arc<AgentShared>,
    /// Becomes `true` when the server shuts down: watch streams and blocking queries end.
    pub shutdown: watch::Receiver<bool>,
}

type HttpResult<T> = Result<T, HttpError>;

/// Builds the router around `state`.
pub(crate) fn build(state: ApiState) -> Router {
    Router::new()
        .route("/v1/members", get(members))
        .route("/v1/members/{name}", get(member))
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
        .route("/v1/stats", get(stats))
        .route(
            "/v1/keys",
            get(crate::api::keys::list).post(crate::api::keys::change),
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
             /v1/tags, /v1/join, /v1/leave, /v1/force-leave, /v1/guard, /v1/watch, /v1/stats, /v1/keys and /metrics",
            uri.path()
        ),
    )
}

// ----- request parsing ----------------------------------------------------------------------

/// A JSON body, whatever its content type (so that `curl -d` works), with errors in the
/// API's shape: 413 over the size limit, 400 for malformed JSON with the expected shape.
pub(crate) struct JsonBody<T>(pub T);

pub(crate) trait BodyShape {
    const SHAPE: &'static str;
}

impl BodyShape for TagsRequest {
    const SHAPE: &'static str = r#"{"set": {"key": "value"}, "delete": ["key"]}"#;
}
impl BodyShape for ServiceRequest {
    const SHAPE: &'static str = r#"{"name": "web", "port": 8080, "tags": {"key": "value"}}"#;
}
impl BodyShape for JoinRequest {
    const SHAPE: &'static str = r#"{"addrs": ["10.0.0.1:7946", "host:7946"]}"#;
}

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned + BodyShape,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::new(
                    status,
                    format!(
                        "request body is too large: the limit is {} KiB",
                        MAX_BODY / 1024
                    ),
                )
            } else {
                HttpError::new(
                    status,
                    format!("cannot read the request body: {}", r.body_text()),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(HttpError::bad_request(format!(
                "missing JSON body; expected {}",
                T::SHAPE
            )));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            HttpError::bad_request(format!("malformed JSON body: {e}; expected {}", T::SHAPE))
        })
    }
}

/// The query string as (key, value) pairs, percent-decoded, in order.
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn check_known(pairs: &[(String, String)], known: &[&str]) -> HttpResult<()> {
    for (k, _) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(HttpError::bad_request(format!(
                "unknown query parameter {k:?}; this route accepts: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn anchored(what: &str, re: &str) -> HttpResult<Regex> {
    RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            HttpError::bad_request(format!(
                "invalid {what} regex {re:?}: {e} (regexes match the whole value, as in Serf)"
            ))
        })
}

/// Filters on served members: `status=` (repeatable or comma list), `name=` regex,
/// `tag=key=regex` (repeatable; every one must match). Regexes match the whole value.
#[derive(Default)]
pub(crate) struct MemberFilter {
    statuses: Option<BTreeSet<ServedStatus>>,
    name: Option<Regex>,
    tags: Vec<(String, Regex)>,
}

fn parse_statuses(pairs: &[(String, String)]) -> HttpResult<Option<BTreeSet<ServedStatus>>> {
    let mut set: Option<BTreeSet<ServedStatus>> = None;
    for (_, v) in pairs.iter().filter(|(k, _)| k == "status") {
        for word in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let st = ServedStatus::parse(word).ok_or_else(|| {
                HttpError::bad_request(format!(
                    "unknown status {word:?}; use alive, suspect, held, left or down"
                ))
            })?;
            set.get_or_insert_with(BTreeSet::new).insert(st);
        }
    }
    Ok(set)
}

impl MemberFilter {
    fn parse(pairs: &[(String, String)]) -> HttpResult<Self> {
        let mut f = MemberFilter {
            statuses: parse_statuses(pairs)?,
            ..Default::default()
        };
        for (k, v) in pairs {
            match k.as_str() {
                "name" => f.name = Some(anchored("name", v)?),
                "tag" => {
                    let (key, re) = v.split_once('=').ok_or_else(|| {
                        HttpError::bad_request(format!(
                            "bad tag filter {v:?}: use tag=KEY=REGEX, e.g. tag=role=web.*"
                        ))
                    })?;
                    if key.is_empty() {
                        return Err(HttpError::bad_request(format!(
                            "bad tag filter {v:?}: the key is empty; use tag=KEY=REGEX"
                        )));
                    }
                    f.tags.push((key.to_string(), anchored("tag", re)?));
                }
                _ => {}
            }
        }
        Ok(f)
    }

    fn matches(&self, m: &shoal_core::MemberView) -> bool {
        if let Some(s) = &self.statuses {
            if !s.contains(&m.status) {
                return false;
            }
        }
        if let Some(re) = &self.name {
            if !re.is_match(&m.name) {
                return false;
            }
        }
        self.tags
            .iter()
            .all(|(k, re)| m.tags.get(k).map(|v| re.is_match(v)).unwrap_or(false))
    }
}

/// Parses a wait duration: `30s`, `500ms`, `5m`, or a bare number of seconds.
pub(crate) fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    Some(d)
}

/// `?index=N&wait=D`: the blocking part of a query.
fn parse_blocking(pairs: &[(String, String)]) -> HttpResult<Option<(u64, Duration)>> {
    let mut index = None;
    let mut wait = None;
    for (k, v) in pairs {
        match k.as_str() {
            "index" => {
                index = Some(v.parse::<u64>().map_err(|_| {
                    HttpError::bad_request(format!(
                        "bad index {v:?}: give the \"index\" of a previous answer"
                    ))
                })?)
            }
            "wait" => {
                wait = Some(parse_wait(v).ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "bad wait {v:?}: use a duration such as 500ms, 30s or 5m"
                    ))
                })?)
            }
            _ => {}
        }
    }
    match (index, wait) {
        (Some(i), w) => Ok(Some((i, w.unwrap_or(MAX_WAIT).min(MAX_WAIT)))),
        (None, Some(_)) => Err(HttpError::bad_request(
            "wait= needs index=N (the \"index\" of a previous answer)",
        )),
        (None, None) => Ok(None),
    }
}

/// Resolves once `*rx` is `true`; never if the sender is gone.
pub(crate) async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Blocks until the node's index is greater than `after`, `wait` passes or the server stops.
pub(crate) async fn wait_for_index(st: &ApiState, after: u64, wait: Duration) {
    let mut rx = st.shared.events.subscribe();
    let current = st.shared.lock().index();
    // An index from the future belongs to a previous life of the agent: answer at once.
    if current != after {
        return;
    }
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    let stop = shutdown_signal(st.shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) if ev.index > after => return,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if st.shared.lock().index() > after {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = &mut deadline => return,
            _ = &mut stop => return,
        }
    }
}

/// The requester, as far as the connection tells (`"unknown"` without connect info).
pub(crate) struct Who(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Who(parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::api::Peer>>()
            .map(|c| c.0 .0.clone())
            .unwrap_or_else(|| "unknown".into())))
    }
}

// ----- shaping --------------------------------------------------------------------------------

fn stats_view(node: &Node) -> StatsView {
    let mut counts: BTreeMap<String, usize> = ALL_STATUSES
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for m in node.members() {
        *counts.entry(m.status.as_str().to_string()).or_default() += 1;
    }
    let (updates, broadcasts) = node.backlog();
    StatsView {
        counters: node.stats().clone(),
        dropped_total: node.stats().dropped_total(),
        backlog: Backlog {
            updates,
            broadcasts,
        },
        active_peers: node.active_peers(),
        idle: node.is_idle(),
        left: node.has_left(),
        members: counts,
        trust: crate::api::keys::trust_view(node),
    }
}

fn member_response(node: &Node) -> MemberResponse {
    MemberResponse {
        index: node.index(),
        guard: node.guard_report(),
        member: node.local_member(),
    }
}

pub(crate) fn snapshot(node: &Node) -> Snapshot {
    Snapshot {
        index: node.index(),
        guard: node.guard_report(),
        members: node.members(),
    }
}

// ----- handlers -------------------------------------------------------------------------------

async fn members(State(st): State<ApiState>, uri: Uri) -> HttpResult<Json<MembersResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["status", "name", "tag", "index", "wait"])?;
    let filter = MemberFilter::parse(&pairs)?;
    if let Some((after, wait)) = parse_blocking(&pairs)? {
        wait_for_index(&st, after, wait).await;
    }
    let node = st.shared.lock();
    Ok(Json(MembersResponse {
        index: node.index(),
        guard: node.guard_report(),
        members: node
            .members()
            .into_iter()
            .filter(|m| filter.matches(m))
            .collect(),
    }))
}

async fn member(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> HttpResult<Json<MemberResponse>> {
    let node = st.shared.lock();
    let member = node.member(&name).ok_or_else(|| {
        HttpError::not_found(format!(
            "no member named {name:?} is known to this agent; list them with GET /v1/members"
        ))
    })?;
    Ok(Json(MemberResponse {
        index: node.index(),
        guard: node.guard_report(),
        member,
    }))
}

async fn local(State(st): State<ApiState>) -> Json<SelfResponse> {
    let node = st.shared.lock();
    Json(SelfResponse {
        index: node.index(),
        guard: node.guard_report(),
        member: node.local_member(),
        stats: stats_view(&node),
    })
}

async fn stats(State(st): State<ApiState>) -> Json<StatsResponse> {
    let node = st.shared.lock();
    Json(StatsResponse {
        index: node.index(),
        guard: node.guard_report(),
        stats: stats_view(&node),
    })
}

fn filter_instances(
    mut v: Vec<shoal_core::Instance>,
    statuses: &Option<BTreeSet<ServedStatus>>,
) -> Vec<shoal_core::Instance> {
    if let Some(s) = statuses {
        v.retain(|i| s.contains(&i.status));
    }
    v
}

async fn services(State(st): State<ApiState>, uri: Uri) -> HttpResult<Json<ServicesResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["status", "index", "wait"])?;
    let statuses = parse_statuses(&pairs)?;
    if let Some((after, wait)) = parse_blocking(&pairs)? {
        wait_for_index(&st, after, wait).await;
    }
    let node = st.shared.lock();
    let services = node
        .services()
        .into_iter()
        .map(|(k, v)| (k, filter_instances(v, &statuses)))
        .filter(|(_, v)| !v.is_empty() || statuses.is_none())
        .collect();
    Ok(Json(ServicesResponse {
        index: node.index(),
        guard: node.guard_report(),
        services,
    }))
}

async fn service(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
) -> HttpResult<Json<ServiceResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["status", "index", "wait"])?;
    let statuses = parse_statuses(&pairs)?;
    if let Some((after, wait)) = parse_blocking(&pairs)? {
        wait_for_index(&st, after, wait).await;
    }
    let node = st.shared.lock();
    let instances = node.services().remove(&name).unwrap_or_default();
    Ok(Json(ServiceResponse {
        index: node.index(),
        guard: node.guard_report(),
        service: name,
        instances: filter_instances(instances, &statuses),
    }))
}

async fn set_tags(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<TagsRequest>,
) -> HttpResult<Json<MemberResponse>> {
    let r = st.shared.with_node(|node, now| {
        node.set_tags(now, &req.set, &req.delete)?;
        Ok::<_, HttpError>(member_response(node))
    })?;
    tracing::info!(
        set = req.set.len(),
        deleted = req.delete.len(),
        "tags changed through the API"
    );
    Ok(Json(r))
}

async fn delete_tag(
    State(st): State<ApiState>,
    Path(key): Path<String>,
) -> HttpResult<Json<MemberResponse>> {
    let r = st.shared.with_node(|node, now| {
        if node.has_left() {
            return Err(HttpError::from(shoal_core::NodeError::Left));
        }
        if !node.own_meta().tags.contains_key(&key) {
            return Err(HttpError::not_found(format!(
                "no tag {key:?} is set on this node; see its tags with GET /v1/self"
            )));
        }
        node.set_tags(now, &BTreeMap::new(), std::slice::from_ref(&key))?;
        Ok(member_response(node))
    })?;
    tracing::info!(key = %key, "tag deleted through the API");
    Ok(Json(r))
}

async fn register_service(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<ServiceRequest>,
) -> HttpResult<Json<MemberResponse>> {
    let svc = Service {
        name: req.name,
        port: req.port,
        tags: req.tags,
        health: req.health,
    };
    let name = svc.name.clone();
    let r = st.shared.with_node(|node, now| {
        node.register_service(now, svc)?;
        Ok::<_, HttpError>(member_response(node))
    })?;
    tracing::info!(service = %name, "service registered through the API");
    Ok(Json(r))
}

async fn deregister_service(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> HttpResult<Json<MemberResponse>> {
    let r = st.shared.with_node(|node, now| {
        if node.has_left() {
            return Err(HttpError::from(shoal_core::NodeError::Left));
        }
        node.deregister_service(now, &name).map_err(|e| match e {
            shoal_core::NodeError::NoSuchService(_) => HttpError::not_found(format!(
                "no service named {name:?} is registered on this node; \
                 see its services with GET /v1/self"
            )),
            e => e.into(),
        })?;
        Ok(member_response(node))
    })?;
    tracing::info!(service = %name, "service deregistered through the API");
    Ok(Json(r))
}

async fn resolve(addr: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = addr.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if !addr.contains(':') {
        return Err("missing port: use IP:PORT or host:PORT".into());
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(addr)).await {
        Err(_) => Err(format!(
            "name resolution timed out after {} s",
            RESOLVE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("cannot resolve: {e}")),
        Ok(Ok(it)) => {
            let v: Vec<SocketAddr> = it.collect();
            if v.is_empty() {
                Err("the name has no address".into())
            } else {
                Ok(v)
            }
        }
    }
}

async fn join(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<JoinRequest>,
) -> HttpResult<Json<JoinResponse>> {
    if req.addrs.is_empty() {
        return Err(HttpError::bad_request(
            "no address to join: give at least one, e.g. {\"addrs\": [\"10.0.0.1:7946\"]}",
        ));
    }
    if st.shared.lock().has_left() {
        return Err(HttpError::from(shoal_core::NodeError::Left));
    }
    let mut out = JoinResponse::default();
    for a in &req.addrs {
        match resolve(a).await {
            Ok(v) => {
                for x in v {
                    if !out.announced.contains(&x) {
                        out.announced.push(x);
                    }
                }
            }
            Err(error) => out.unresolved.push(Unresolved {
                addr: a.clone(),
                error,
            }),
        }
    }
    if !out.announced.is_empty() {
        let addrs = out.announced.clone();
        st.shared.with_node(|node, now| node.join(now, &addrs))?;
    }
    tracing::info!(
        announced = out.announced.len(),
        unresolved = out.unresolved.len(),
        "join requested through the API"
    );
    Ok(Json(out))
}

async fn leave(State(st): State<ApiState>, Who(who): Who) -> HttpResult<Json<LeaveResponse>> {
    let flushed = st.shared.flushed.notified();
    tokio::pin!(flushed);
    flushed.as_mut().enable();
    st.shared.with_node(|node, now| node.leave(now))?;
    tracing::info!(by = %who, "leave requested through the API");
    let flushed = tokio::time::timeout(LEAVE_FLUSH_WAIT, flushed)
        .await
        .is_ok();
    if !flushed {
        tracing::warn!("the event loop did not confirm within 2 s that the leave was sent");
    }
    Ok(Json(LeaveResponse {
        left: true,
        flushed,
    }))
}

/// `POST /v1/force-leave/{name}` (Serf's name): the operator removes a failed or held member
/// here and on every active agent. Audited in the log.
async fn force_leave(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Who(who): Who,
) -> HttpResult<Json<ForceLeaveResponse>> {
    let r = st.shared.with_node(|node, now| {
        if node.member(&name).is_none() {
            return Err(HttpError::not_found(format!(
                "no member named {name:?} is known to this agent; list them with GET /v1/members"
            )));
        }
        let (released, told) = node.force_leave(now, &name)?;
        Ok(ForceLeaveResponse {
            index: node.index(),
            guard: node.guard_report(),
            node: name.clone(),
            released,
            told,
        })
    })?;
    tracing::warn!(
        node = %name,
        by = %who,
        released = r.released,
        told = r.told,
        "operator force-leave through the API"
    );
    Ok(Json(r))
}

fn guard_response(node: &Node) -> GuardResponse {
    GuardResponse {
        index: node.index(),
        guard: node.guard_report(),
    }
}

async fn guard(State(st): State<ApiState>) -> Json<GuardResponse> {
    Json(guard_response(&st.shared.lock()))
}

async fn guard_freeze(State(st): State<ApiState>, Who(who): Who) -> Json<GuardResponse> {
    guard_override(&st, &who, "freeze", Node::guard_freeze)
}

async fn guard_thaw(State(st): State<ApiState>, Who(who): Who) -> Json<GuardResponse> {
    guard_override(&st, &who, "thaw", Node::guard_thaw)
}

/// An operator override of the guard, audited in the log with who asked.
fn guard_override(
    st: &ApiState,
    who: &str,
    action: &'static str,
    apply: fn(&mut Node, Time, &str),
) -> Json<GuardResponse> {
    let r = st.shared.with_node(|node, now| {
        apply(node, now, &format!("api ({who})"));
        guard_response(node)
    });
    tracing::warn!(
        action,
        via = "api",
        by = %who,
        state = r.guard.state.as_str(),
        "operator override of the guard through the API: {action}"
    );
    Json(r)
}

async fn metrics_text(State(st): State<ApiState>) -> Response {
    let input = {
        let node = st.shared.lock();
        let mut members: BTreeMap<ServedStatus, usize> = BTreeMap::new();
        for m in node.members() {
            *members.entry(m.status).or_default() += 1;
        }
        MetricsInput {
            stats: node.stats().clone(),
            guard: node.guard_report(),
            members,
            active_peers: node.active_peers(),
            idle: node.is_idle(),
            index: node.index(),
            backlog: node.backlog(),
            trust: crate::api::keys::trust_view(&node),
        }
    };
    let mut resp = metrics::render(&input).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

// ----- watch ----------------------------------------------------------------------------------

struct WatchState {
    shared: Arc<AgentShared>,
    rx: broadcast::Receiver<Event>,
    /// Events with an index up to this one are already reflected in what was sent.
    seen: u64,
    first: Option<String>,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl WatchState {
    /// The next line, with wall-clock times beside the agent-clock ones.
    async fn next_line(&mut self) -> Option<String> {
        let line = self.next_raw_line().await?;
        Some(crate::api::wallclock::annotate_line(
            &line,
            self.shared.epoch_unix_ms(),
        ))
    }

    async fn next_raw_line(&mut self) -> Option<String> {
        if let Some(l) = self.first.take() {
            return Some(l);
        }
        loop {
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(ev) => {
                        if ev.index <= self.seen {
                            continue;
                        }
                        self.seen = ev.index;
                        return Some(WatchLine::Event(ev).to_line());
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "watcher fell behind; sending a new snapshot");
                        let snap = snapshot(&self.shared.lock());
                        self.seen = snap.index;
                        return Some(WatchLine::Snapshot(snap).to_line());
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = &mut self.stop => return None,
            }
        }
    }
}

/// `GET /v1/watch[?index=N]`: NDJSON. The first line is a snapshot of the served view (left
/// out when `index=N` is given and nothing changed since N), then one line per event.
async fn watch_stream(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["index"])?;
    let mut after = None;
    for (k, v) in &pairs {
        if k == "index" {
            after = Some(v.parse::<u64>().map_err(|_| {
                HttpError::bad_request(format!(
                    "bad index {v:?}: give the index of the last line you received"
                ))
            })?);
        }
    }
    // Subscribe before the snapshot so that no event falls between them.
    let rx = st.shared.events.subscribe();
    let snap = snapshot(&st.shared.lock());
    let (first, seen) = match after {
        Some(n) if n == snap.index => (None, n),
        _ => {
            let i = snap.index;
            (Some(WatchLine::Snapshot(snap).to_line()), i)
        }
    };
    let state = WatchState {
        shared: st.shared.clone(),
        rx,
        seen,
        first,
        stop: Box::pin(shutdown_signal(st.shutdown.clone())),
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let line = s.next_line().await?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), s))
    });
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_durations() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_wait("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_wait("7x"), None);
        assert_eq!(parse_wait(""), None);
    }

    #[test]
    fn blocking_wait_is_capped() {
        let pairs = vec![
            ("index".to_string(), "3".to_string()),
            ("wait".to_string(), "2h".to_string()),
        ];
        assert_eq!(parse_blocking(&pairs).unwrap(), Some((3, MAX_WAIT)));
    }
}
