//! Wall-clock times beside the agent's clock in every JSON answer of the local API.
//!
//! The core counts time in milliseconds since the agent started (`since_ms`, `at_ms`): that
//! means nothing to a reader and restarts with the agent. This module adds, beside each such
//! field, the same instant as an RFC 3339 UTC time (`since`, `at`), computed from the wall
//! clock at the agent's start (`AgentShared::epoch_unix_ms`). It only adds fields (the
//! existing ones stay, as the API's contract says) and decides nothing.

use crate::api::state::ApiState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// The fields that carry agent-clock milliseconds, and the wall-clock field added beside.
const PAIRS: [(&str, &str); 5] = [
    ("since_ms", "since"),
    ("at_ms", "at"),
    ("until_ms", "until"),
    ("first_ms", "first"),
    ("last_heard_ms", "last_heard"),
];

/// Largest answer rewritten (a served view of 10,000 members is a few MB).
const MAX_REWRITE: usize = 64 * 1024 * 1024;

/// `unix_ms` as RFC 3339 UTC with milliseconds: `2026-12-01T02:12:27.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// Adds `since`/`at` beside every `since_ms`/`at_ms` in `v`, at any depth.
pub fn annotate(v: &mut Value, epoch_unix_ms: u64) {
    match v {
        Value::Object(map) => {
            for (ms_key, key) in PAIRS {
                if map.contains_key(key) {
                    continue;
                }
                if let Some(ms) = map.get(ms_key).and_then(Value::as_u64) {
                    let t = rfc3339(epoch_unix_ms.saturating_add(ms));
                    map.insert(key.to_string(), Value::String(t));
                }
            }
            for x in map.values_mut() {
                annotate(x, epoch_unix_ms);
            }
        }
        Value::Array(items) => {
            for x in items {
                annotate(x, epoch_unix_ms);
            }
        }
        _ => {}
    }
}

/// One NDJSON line (with its newline) with the wall-clock fields added.
pub fn annotate_line(line: &str, epoch_unix_ms: u64) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(mut v) => {
            annotate(&mut v, epoch_unix_ms);
            let mut s = serde_json::to_string(&v).unwrap_or_else(|_| line.trim_end().to_string());
            s.push('\n');
            s
        }
        Err(_) => line.to_string(),
    }
}

/// Middleware: JSON answers get their wall-clock fields (streams are left to the watch
/// handler, which annotates each line).
pub(crate) async fn add_wall_times(
    State(st): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.starts_with("application/json"))
        .unwrap_or(false);
    if !is_json || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REWRITE).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read an API answer to add wall-clock times");
            return crate::api::error::json_error(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "the answer could not be read back; retry",
            );
        }
    };
    let out = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            annotate(&mut v, st.shared.epoch_unix_ms());
            serde_json::to_vec(&v).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_798_769_547_123), "2027-01-01T02:12:27.123Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn fields_are_added_beside_at_any_depth() {
        let mut v = serde_json::json!({
            "guard": {"since_ms": 1500},
            "members": [{"since_ms": 0, "name": "a"}],
            "at_ms": 2000,
            "kept": {"since_ms": 1, "since": "already"},
        });
        annotate(&mut v, 1_798_769_547_000);
        assert_eq!(v["guard"]["since"], "2027-01-01T02:12:28.500Z");
        assert_eq!(v["guard"]["since_ms"], 1500);
        assert_eq!(v["members"][0]["since"], "2027-01-01T02:12:27.000Z");
        assert_eq!(v["at"], "2027-01-01T02:12:29.000Z");
        assert_eq!(v["kept"]["since"], "already");
        let line = annotate_line("{\"index\":3,\"at_ms\":0}\n", 0);
        assert_eq!(
            line,
            "{\"at\":\"1970-01-01T00:00:00.000Z\",\"at_ms\":0,\"index\":3}\n"
        );
    }
}
