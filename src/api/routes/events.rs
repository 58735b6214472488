//! Routes of user events and queries: `PUT /v1/event/{name}` (fire, the body is the
//! payload), `GET /v1/events` (the recent ones), `POST /v1/query/{name}` (ask, wait for the
//! answers until every expected member answered or the timeout, answer with counts).
//!
//! Must not decide who matches, how events spread or when a query ends: the core does
//! (`core::fleet`). Answers come from handlers in the config file, never from the API.

use super::*;
use crate::api::body::query_pairs;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::Json;
use shoal_core::QueryFilter;

pub(super) async fn fire_event(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
    body: Bytes,
) -> HttpResult<Json<EventFireResponse>> {
    let pairs = query_pairs(&uri);
    check_known(&pairs, &["coalesce"])?;
    let coalesce = match pairs.iter().find(|(k, _)| k == "coalesce") {
        None => true,
        Some((_, v)) => match v.as_str() {
            "" | "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(HttpError::bad_request(format!(
                    "coalesce={v:?}: give coalesce=false to deliver every event of this name, \
                     or leave it out"
                )))
            }
        },
    };
    let r = st.shared.with_node(|node, now| {
        node.user_event(now, &name, body.to_vec(), coalesce)
            .map(|event| EventFireResponse {
                index: node.index(),
                event,
            })
    })?;
    Ok(Json(r))
}

pub(super) async fn list_events(State(st): State<ApiState>) -> Json<EventsResponse> {
    let node = st.shared.lock();
    Json(EventsResponse {
        index: node.index(),
        guard: node.guard_report(),
        clock: node.event_clock(),
        events: node.recent_events(),
    })
}

/// The filter and timeout of a query from its URL query.
pub(super) fn query_params(
    pairs: &[(String, String)],
) -> HttpResult<(QueryFilter, Option<Duration>)> {
    check_known(pairs, &["node", "tag", "service", "timeout"])?;
    let mut filter = QueryFilter::default();
    let mut timeout = None;
    for (k, v) in pairs {
        match k.as_str() {
            "node" => filter.nodes.push(v.clone()),
            "tag" => {
                let (key, val) = v.split_once('=').ok_or_else(|| {
                    HttpError::bad_request(format!("tag={v:?}: give tag=key=value"))
                })?;
                filter.tags.push((key.to_string(), val.to_string()));
            }
            "service" => filter.service = Some(v.clone()),
            "timeout" => {
                timeout = Some(parse_wait(v).ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "timeout={v:?}: give a duration such as 500ms, 5s or 1m"
                    ))
                })?)
            }
            _ => {}
        }
    }
    Ok((filter, timeout))
}

pub(super) async fn run_query(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
    body: Bytes,
) -> HttpResult<Json<QueryResponse>> {
    let (filter, timeout) = query_params(&query_pairs(&uri))?;
    let first = st
        .shared
        .with_node(|node, now| node.query(now, &name, body.to_vec(), filter, timeout))?;
    let id = first.id;
    let end = tokio::time::Instant::now() + Duration::from_millis(first.timeout_ms);
    let stop = shutdown_signal(st.shutdown.clone());
    tokio::pin!(stop);
    loop {
        // Subscribe before looking, so that an answer flushed in between wakes us.
        let flushed = st.shared.flushed.notified();
        tokio::pin!(flushed);
        flushed.as_mut().enable();
        let done = {
            let mut node = st.shared.lock();
            let now = st.shared.now();
            node.query_status(now, id).is_none_or(|s| s.done)
        };
        if done {
            break;
        }
        tokio::select! {
            _ = &mut flushed => {}
            _ = tokio::time::sleep_until(end) => {}
            _ = &mut stop => break,
        }
    }
    let node = &mut *st.shared.lock();
    let now = st.shared.now();
    let status = node.query_status(now, id).unwrap_or(first);
    Ok(Json(QueryResponse {
        index: node.index(),
        guard: node.guard_report(),
        query: status.into(),
    }))
}
