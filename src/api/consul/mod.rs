//! A Consul-compatible, read-only HTTP API on an optional TCP listener
//! (`--consul-api 127.0.0.1:8500`; loopback unless `listen_remote`), so that tools that discover services from Consul
//! (Prometheus `consul_sd_configs`, consul-template, Traefik, Consul client libraries) read
//! shoal's **served view** unchanged, fail-static included.
//!
//! Owns the routes, query parameters (`index`/`wait` blocking queries in Consul's formats,
//! `tag`, `node-meta`, `passing`, `dc`, `near`), the `X-Consul-*` headers, the 404/405 answers and the
//! listener. Shapes and the mapping are in `shapes`. It reads the node under its lock (never
//! across an await) and must never change it: every write answers 405 and points at shoal's
//! own API, except Consul's `PUT /v1/event/fire/NAME` (`events`: a user event, with the API
//! token).

mod coordinate;
mod events;
pub mod shapes;

use crate::agent::shared::AgentShared;
use crate::api::body::query_pairs;
use crate::api::error::{json_error, ApiError, HttpError};
use crate::api::limits::{ApiLimits, Reach};
use crate::api::routes::wait_for_index;
use crate::api::state::ApiState;
use crate::api::SHUTDOWN_GRACE;
use axum::extract::{Path, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use shapes::{aggregated, ViewData, PASSING};
use shoal_core::{Node, ServedStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest a blocking query may wait (Consul's own cap).
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Wait of a blocking query that gives `index` without `wait` (Consul's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Datacenter name when no cluster label is set.
pub const DEFAULT_DATACENTER: &str = "dc1";

type HttpResult<T> = Result<T, HttpError>;

/// The datacenter this agent reports: its cluster label, or `dc1`.
pub fn datacenter(node: &Node) -> String {
    let label = &node.config().cluster_label;
    if label.is_empty() {
        DEFAULT_DATACENTER.to_string()
    } else {
        label.clone()
    }
}

/// Reads everything an answer needs under one lock.
pub fn view(node: &Node) -> ViewData {
    let mut health_held = BTreeMap::new();
    let mut ejected = BTreeMap::new();
    let served = node
        .services()
        .into_values()
        .flatten()
        .map(|i| {
            if let Some(why) = i.health_held {
                health_held.insert((i.node.clone(), i.id.clone()), why);
            }
            if let Some(e) = i.ejected {
                ejected.insert((i.node.clone(), i.id.clone()), e);
            }
            (i.node, i.id)
        })
        .collect::<BTreeSet<_>>();
    ViewData {
        datacenter: datacenter(node),
        index: node.index() + 1,
        guard: node.guard_report(),
        self_name: node.name().to_string(),
        members: node
            .members()
            .into_iter()
            .filter(|m| m.status != ServedStatus::Left)
            .collect(),
        served,
        health_held,
        ejected,
    }
}

/// The query parameters this API understands (others are ignored, as Consul does).
#[derive(Debug, Default, PartialEq)]
struct Query {
    /// `index=N`: block while the answer's index is still N.
    index: Option<u64>,
    wait: Option<Duration>,
    tags: Vec<String>,
    node_meta: Vec<(String, String)>,
    passing: bool,
    /// `near=_agent` or `near=NODE`: nearest first by network coordinates.
    near: Option<String>,
}

impl Query {
    fn parse(uri: &Uri, dc: &str) -> HttpResult<Query> {
        let mut q = Query::default();
        for (k, v) in query_pairs(uri) {
            match k.as_str() {
                "index" => {
                    q.index = Some(v.parse().map_err(|_| {
                        HttpError::bad_request(format!(
                            "bad index {v:?}: give the X-Consul-Index of a previous answer"
                        ))
                    })?)
                }
                "wait" => {
                    q.wait = Some(crate::api::routes::parse_wait(&v).ok_or_else(|| {
                        HttpError::bad_request(format!(
                            "bad wait {v:?}: use a duration such as 120000ms, 30s or 2m"
                        ))
                    })?)
                }
                "tag" => q.tags.push(v),
                "node-meta" => {
                    let (mk, mv) = v.split_once(':').ok_or_else(|| {
                        HttpError::bad_request(format!(
                            "bad node-meta {v:?}: use node-meta=KEY:VALUE"
                        ))
                    })?;
                    q.node_meta.push((mk.to_string(), mv.to_string()));
                }
                "passing" => q.passing = !matches!(v.as_str(), "false" | "0"),
                "near" if !v.is_empty() => q.near = Some(v),
                "dc" if !v.is_empty() && v != dc => {
                    return Err(HttpError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("No path to datacenter {v:?}: this agent serves {dc:?}"),
                    ))
                }
                "filter" => {
                    return Err(HttpError::bad_request(
                        "filter expressions are not supported by shoal's Consul API; \
                         use tag= and node-meta=, or shoal's own API",
                    ))
                }
                _ => {}
            }
        }
        Ok(q)
    }

    fn node_matches(&self, meta: &std::collections::BTreeMap<String, String>) -> bool {
        self.node_meta
            .iter()
            .all(|(k, v)| meta.get(k).map(|x| x == v).unwrap_or(false))
    }
}

/// Blocks as a Consul blocking query does, then reads the view.
async fn read(st: &ApiState, uri: &Uri) -> HttpResult<(ViewData, Query)> {
    let dc = datacenter(&st.shared.lock());
    let q = Query::parse(uri, &dc)?;
    if let Some(n) = q.index.filter(|n| *n > 0) {
        let wait = q.wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
        wait_for_index(st, n - 1, wait).await;
    }
    let v = view(&st.shared.lock());
    Ok((v, q))
}

/// A JSON answer with Consul's headers.
fn answer<T: Serialize>(v: &ViewData, body: &T) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(b) => b,
        Err(e) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the answer: {e}"),
            )
        }
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(i) = HeaderValue::from_str(&v.index.to_string()) {
        h.insert(HeaderName::from_static("x-consul-index"), i);
    }
    h.insert(
        HeaderName::from_static("x-consul-knownleader"),
        HeaderValue::from_static("true"),
    );
    h.insert(
        HeaderName::from_static("x-consul-lastcontact"),
        HeaderValue::from_static("0"),
    );
    h.insert(
        HeaderName::from_static("x-shoal-guard"),
        HeaderValue::from_static(v.guard.state.as_str()),
    );
    resp
}

/// The Consul API's router over `shared`, without binding anything (for tests).
pub fn router(shared: Arc<AgentShared>) -> Router {
    let (_, rx) = watch::channel(false);
    build(ApiState::new(shared, rx, 1))
}

fn build(state: ApiState) -> Router {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(agent_members))
        .route("/v1/catalog/datacenters", get(datacenters))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/catalog/nodes", get(catalog_nodes))
        .route("/v1/catalog/node/{node}", get(catalog_node))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/health/node/{node}", get(health_node))
        .route("/v1/status/leader", get(status_leader))
        .route("/v1/status/peers", get(status_peers))
        .route("/v1/event/fire/{name}", axum::routing::put(events::fire))
        .route("/v1/event/list", get(events::list))
        .route("/v1/coordinate/nodes", get(coordinate::nodes))
        .route("/v1/coordinate/node/{node}", get(coordinate::node))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        // Extractor rejections (a badly encoded path) as `{"error": …}` too.
        .layer(axum::middleware::from_fn(crate::api::error::json_errors))
        .with_state(state)
}

const ROUTES: &str = "/v1/agent/self, /v1/agent/members, /v1/catalog/datacenters, \
                      /v1/catalog/services, /v1/catalog/service/NAME, /v1/catalog/nodes, \
                      /v1/catalog/node/NODE, /v1/health/service/NAME, /v1/health/node/NODE, \
                      /v1/status/leader, /v1/status/peers, /v1/event/list, \
                      /v1/coordinate/nodes, /v1/coordinate/node/NODE, \
                      PUT /v1/event/fire/NAME";

async fn fallback(method: Method, uri: Uri) -> Response {
    if matches!(method, Method::GET | Method::HEAD) {
        json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "no route for GET {}: shoal's Consul-compatible API serves {ROUTES}",
                uri.path()
            ),
        )
    } else {
        let mut r = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{method} {} is not supported: shoal's Consul-compatible API is read-only. \
                 Register services and tags with shoal's own API on the agent's socket \
                 (PUT /v1/services, PUT /v1/tags; `shoal services`, `shoal tags`) or in its \
                 config file",
                uri.path()
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        r
    }
}

async fn agent_self(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    let me = v.members.iter().find(|m| m.name == v.self_name).cloned();
    let me = match me {
        Some(m) => m,
        None => st.shared.lock().local_member(),
    };
    let body = serde_json::json!({
        "Config": {
            "Datacenter": v.datacenter,
            "NodeName": v.self_name,
            "NodeID": shapes::node_id(&v.self_name),
            "Server": false,
            "Revision": "shoal",
            "Version": env!("CARGO_PKG_VERSION"),
        },
        "Member": v.agent_member(&me),
        "Meta": me.tags,
        "Shoal": {
            "guard": v.guard,
            "index": v.index - 1,
        },
    });
    Ok(answer(&v, &body))
}

async fn agent_members(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    let body: Vec<_> = v.members.iter().map(|m| v.agent_member(m)).collect();
    Ok(answer(&v, &body))
}

async fn datacenters(State(st): State<ApiState>) -> Response {
    let v = view(&st.shared.lock());
    answer(&v, &std::slice::from_ref(&v.datacenter))
}

async fn catalog_services(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let (mut v, q) = read(&st, &uri).await?;
    v.members.retain(|m| q.node_matches(&m.tags));
    Ok(answer(&v, &v.catalog_services()))
}

/// `?near=`: nearest first by network coordinates (as Consul, the order is left alone when
/// the node named has no coordinate here).
fn near<T>(st: &ApiState, q: &Query, items: &mut [T], node_of: impl Fn(&T) -> &str) {
    let Some(n) = &q.near else { return };
    let rtt = crate::api::routes::coords::near_order(&st.shared.lock(), n);
    if let Some(rtt) = rtt {
        crate::api::routes::coords::sort_near(items, &rtt, node_of);
    }
}

fn has_tags(q: &Query, svc: &shoal_core::Service) -> bool {
    let tags = shapes::service_tags(svc);
    q.tags.iter().all(|t| tags.contains(t))
}

async fn catalog_service(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
) -> HttpResult<Response> {
    let (v, q) = read(&st, &uri).await?;
    let mut body: Vec<_> = v
        .instances(&name)
        .filter(|(m, s)| q.node_matches(&m.tags) && has_tags(&q, s))
        .map(|(m, s)| v.catalog_service(m, s))
        .collect();
    near(&st, &q, &mut body, |e| &e.node);
    Ok(answer(&v, &body))
}

async fn catalog_nodes(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let (v, q) = read(&st, &uri).await?;
    let body: Vec<_> = v
        .members
        .iter()
        .filter(|m| q.node_matches(&m.tags))
        .map(|m| v.node(m))
        .collect();
    Ok(answer(&v, &body))
}

/// `null` for an unknown node, as Consul answers.
async fn catalog_node(
    State(st): State<ApiState>,
    Path(node): Path<String>,
    uri: Uri,
) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    Ok(answer(&v, &v.catalog_node(&node)))
}

async fn health_service(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
) -> HttpResult<Response> {
    let (v, q) = read(&st, &uri).await?;
    let mut body: Vec<_> = v
        .instances(&name)
        .filter(|(m, s)| q.node_matches(&m.tags) && has_tags(&q, s))
        .map(|(m, s)| v.health_entry(m, s))
        .filter(|e| !q.passing || aggregated(&e.checks) == PASSING)
        .collect();
    near(&st, &q, &mut body, |e| &e.node.node);
    Ok(answer(&v, &body))
}

async fn health_node(
    State(st): State<ApiState>,
    Path(node): Path<String>,
    uri: Uri,
) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    let mut body = Vec::new();
    if let Some(m) = v.members.iter().find(|m| m.name == node) {
        body.push(v.node_check(m));
        for s in &m.services {
            body.extend(v.checks(m, s).into_iter().skip(1));
        }
    }
    Ok(answer(&v, &body))
}

async fn status_leader(State(st): State<ApiState>) -> Response {
    let (v, addr) = {
        let node = st.shared.lock();
        (view(&node), node.config().advertise.to_string())
    };
    answer(&v, &addr)
}

async fn status_peers(State(st): State<ApiState>) -> Response {
    let (v, addr) = {
        let node = st.shared.lock();
        (view(&node), node.config().advertise.to_string())
    };
    answer(&v, &[addr])
}

/// The running Consul-compatible listener.
pub struct ConsulHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl ConsulHandle {
    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, ends blocking queries, waits up to `SHUTDOWN_GRACE` for open ones.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}

impl Drop for ConsulHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Binds `addr` (loopback only: see `spawn_reach` for other hosts) and serves the Consul API
/// with the default bounds.
pub async fn spawn(shared: Arc<AgentShared>, addr: SocketAddr) -> Result<ConsulHandle, ApiError> {
    spawn_with(shared, addr, ApiLimits::default()).await
}

/// As [`spawn`], with the connection bound and timeouts of `limits` (the agent's
/// `api_max_connections`, `api_header_timeout`, `api_idle_timeout`).
pub async fn spawn_with(
    shared: Arc<AgentShared>,
    addr: SocketAddr,
    limits: ApiLimits,
) -> Result<ConsulHandle, ApiError> {
    spawn_reach(shared, addr, limits, Reach::Local).await
}

/// As [`spawn_with`], on a non-loopback address too when `reach` is `Remote`
/// (`listen_remote`): every route of this API reads, none changes anything.
pub async fn spawn_reach(
    shared: Arc<AgentShared>,
    addr: SocketAddr,
    limits: ApiLimits,
    reach: Reach,
) -> Result<ConsulHandle, ApiError> {
    if !reach.allows(addr) {
        return Err(ApiError::NotLoopback(addr));
    }
    limits.validate().map_err(ApiError::Limits)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::BindTcp { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ApiError::BindTcp { addr, source })?;
    let (stop, rx) = watch::channel(false);
    let app = build(ApiState::new(
        shared.clone(),
        rx.clone(),
        limits.max_watches,
    ));
    let task = tokio::spawn(crate::api::serve::serve(listener, app, limits, shared, rx));
    tracing::info!(addr = %local, "Consul-compatible API listening");
    reach.warn_if_remote("the Consul-compatible API", local);
    Ok(ConsulHandle {
        stop,
        task: Some(task),
        addr: local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(q: &str) -> Uri {
        format!("/v1/health/service/web?{q}").parse().unwrap()
    }

    #[test]
    fn query_parameters_in_consuls_formats() {
        let q = Query::parse(
            &uri("index=42&wait=120000ms&tag=a&tag=b=1&node-meta=zone:a&passing&dc=dc1&stale"),
            "dc1",
        )
        .unwrap();
        assert_eq!(q.index, Some(42));
        assert_eq!(q.wait, Some(Duration::from_secs(120)));
        assert_eq!(q.tags, vec!["a", "b=1"]);
        assert_eq!(q.node_meta, vec![("zone".to_string(), "a".to_string())]);
        assert!(q.passing);
        assert_eq!(
            Query::parse(&uri("wait=2m"), "dc1").unwrap().wait,
            Some(Duration::from_secs(120))
        );
        assert!(!Query::parse(&uri("passing=false"), "dc1").unwrap().passing);
        assert_eq!(
            Query::parse(&uri("dc=other"), "dc1").unwrap_err().status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        for bad in [
            "index=x",
            "wait=soon",
            "node-meta=zone",
            "filter=Service==web",
        ] {
            assert_eq!(
                Query::parse(&uri(bad), "dc1").unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
