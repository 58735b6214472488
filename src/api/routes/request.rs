//! Request parsing shared by the routes: JSON bodies in the API's error shape, query strings,
//! member filters, blocking-query parameters and the requester's identity.
//!
//! Owns turning a request into checked values (400 with a hint on anything malformed). Must not
//! read or change the node beyond waiting for its index (`wait_for_index`).

use super::*;
use crate::api::body::BodyShape;
use crate::api::error::HttpError;
use regex::{Regex, RegexBuilder};
use shoal_core::ServedStatus;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Compiled size limit of a filter regex (they come from local users, but stay cheap).
pub(super) const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl BodyShape for TagsRequest {
    const SHAPE: &'static str = r#"{"set": {"key": "value"}, "delete": ["key"]}"#;
}
impl BodyShape for ServiceRequest {
    const SHAPE: &'static str = r#"{"name": "web", "port": 8080, "tags": {"key": "value"}, "checks": [{"http": "http://127.0.0.1:8080/health", "interval": "10s"}]}"#;
}
impl BodyShape for JoinRequest {
    const SHAPE: &'static str = r#"{"addrs": ["10.0.0.1:7946", "host:7946"]}"#;
}

pub(super) fn check_known(pairs: &[(String, String)], known: &[&str]) -> HttpResult<()> {
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

pub(super) fn anchored(what: &str, re: &str) -> HttpResult<Regex> {
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

pub(super) fn parse_statuses(
    pairs: &[(String, String)],
) -> HttpResult<Option<BTreeSet<ServedStatus>>> {
    let mut set: Option<BTreeSet<ServedStatus>> = None;
    for (_, v) in pairs.iter().filter(|(k, _)| k == "status") {
        for word in v.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let st = ServedStatus::parse(word).ok_or_else(|| {
                HttpError::bad_request(format!(
                    "unknown status {word:?}; use alive, suspect, held, restarting, left or down"
                ))
            })?;
            set.get_or_insert_with(BTreeSet::new).insert(st);
        }
    }
    Ok(set)
}

impl MemberFilter {
    pub(super) fn parse(pairs: &[(String, String)]) -> HttpResult<Self> {
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

    pub(super) fn matches(&self, m: &shoal_core::MemberView) -> bool {
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
pub(super) fn parse_blocking(pairs: &[(String, String)]) -> HttpResult<Option<(u64, Duration)>> {
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
pub(crate) struct Who(pub(super) String);

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
