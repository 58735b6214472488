//! The watch stream, `/v1/watch`: NDJSON, a snapshot of the served view then one line per
//! event, with a new snapshot when the reader falls behind.
//!
//! Owns the stream's state and its slot under `api_max_watches`. Must not hold the node's lock
//! across an await.

use super::*;
use crate::agent::shared::AgentShared;
use crate::api::body::query_pairs;
use crate::api::error::HttpError;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use shoal_core::Event;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::broadcast;

pub(super) struct WatchState {
    shared: Arc<AgentShared>,
    rx: broadcast::Receiver<std::sync::Arc<Event>>,
    /// Events with an index up to this one are already reflected in what was sent.
    seen: u64,
    first: Option<String>,
    stop: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _slot: WatchSlot,
}

/// A watch stream's place under `api_max_watches`; counted in `/metrics` while it lives.
pub(super) struct WatchSlot {
    shared: Arc<AgentShared>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.shared.api_load.watches.fetch_sub(1, Ordering::Relaxed);
    }
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
                        return Some(WatchLine::Event(std::sync::Arc::unwrap_or_clone(ev)).to_line());
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
pub(super) async fn watch_stream(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
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
    let Ok(permit) = st.watches.clone().try_acquire_owned() else {
        st.shared
            .api_load
            .rejected_watches
            .fetch_add(1, Ordering::Relaxed);
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the agent serves at most {} watch streams at once and all are taken:                  retry later, share one stream between readers, or raise api_max_watches",
                st.max_watches
            ),
        ));
    };
    st.shared.api_load.watches.fetch_add(1, Ordering::Relaxed);
    let slot = WatchSlot {
        shared: st.shared.clone(),
        _permit: permit,
    };
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
        _slot: slot,
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
