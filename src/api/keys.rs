//! The keyring routes: `GET /v1/keys` (the key ids, never the keys) and `POST /v1/keys`
//! (install, use or remove a key across the cluster, with the list of members that did not
//! confirm).
//!
//! Owns the request and answer shapes of these routes and the wait for confirmations (with
//! resends). Must not persist the keyring (the event loop does, when the node reports a
//! change) nor print a key.

use crate::api::body::{BodyShape, JsonBody};
use crate::api::error::HttpError;
use crate::api::state::ApiState;
pub use crate::api::types::TrustView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use shoal_core::Key;
use shoal_core::KeysError;
use shoal_core::Node;
use shoal_core::Plaintext;
use shoal_core::{Confirm, KeyOpKind};
use std::time::Duration;

/// How long `POST /v1/keys` waits for every member to confirm.
pub const KEYS_WAIT: Duration = Duration::from_secs(3);
/// Resend to members that have not confirmed this often while waiting.
const RESEND_EVERY: Duration = Duration::from_millis(500);

/// `GET /v1/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysResponse {
    /// False when the agent runs `--insecure`.
    pub encrypted: bool,
    /// `refuse`, `accept` or `send` (see the transition procedure in docs/security.md).
    pub plaintext: Plaintext,
    /// Id of the primary key (the one this agent sends with).
    pub primary: Option<String>,
    /// Ids of every key in the ring, the primary first.
    pub keys: Vec<String>,
    /// Ids of the keys `keys remove` retired here (never accepted again), oldest first.
    #[serde(default)]
    pub retired: Vec<String>,
}

/// `POST /v1/keys` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysRequest {
    pub op: KeyOpKind,
    /// The key, base64 (as `shoal keygen` prints it).
    pub key: String,
}

impl BodyShape for KeysRequest {
    const SHAPE: &'static str = r#"{"op": "install|use|remove", "key": "<base64 key>"}"#;
}

/// A member that refused a change, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub name: String,
    pub error: String,
}

/// `POST /v1/keys` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysChangeResponse {
    pub op: KeyOpKind,
    pub key_id: String,
    /// Members asked (every active member but this one).
    pub asked: usize,
    pub confirmed: Vec<String>,
    /// Members that did not answer within the wait: run the command again, or check them.
    pub missing: Vec<String>,
    pub refused: Vec<Refusal>,
    /// This agent's keyring after the change.
    pub keyring: KeysResponse,
}

pub(crate) fn trust_view(node: &Node) -> TrustView {
    TrustView {
        encrypted: !node.is_insecure(),
        plaintext: node.plaintext_mode(),
        stats: node.trust_stats(),
    }
}

/// The trust part of `/metrics`.
pub(crate) fn render_metrics(out: &mut crate::api::exposition::Exposition, t: &TrustView) {
    out.gauge(
        "shoal_encrypted",
        "1 when gossip is encrypted and authenticated, 0 when the agent runs --insecure.",
        u64::from(t.encrypted),
    );
    out.gauge(
        "shoal_plaintext_accepted",
        "1 while plaintext datagrams are accepted (insecure, or a transition to encryption).",
        u64::from(!t.encrypted || t.plaintext != Plaintext::Refuse),
    );
    out.counter(
        "shoal_datagrams_sealed_total",
        "Datagrams sealed (encrypted and authenticated) and sent.",
        t.stats.sealed,
    );
    out.counter(
        "shoal_datagrams_opened_total",
        "Sealed datagrams received, authenticated and opened.",
        t.stats.opened,
    );
    out.gauge(
        "shoal_replay_sessions",
        "Sender sessions tracked for replay protection.",
        t.stats.replay_sessions,
    );
    out.counter(
        "shoal_replay_evictions_total",
        "Replay-table sessions evicted because the table was full (raise trust.max_sessions).",
        t.stats.replay_evictions,
    );
    out.counter(
        "shoal_datagrams_skewed_total",
        "Datagrams accepted although stamped further than trust.replay_window from this agent's \
         clock (membership needs no clock sync; check NTP).",
        t.stats.skewed,
    );
    out.counter(
        "shoal_keyring_catch_ups_total",
        "Keyrings adopted from a peer with a newer one (this agent missed a rotation step).",
        t.stats.keyring_catch_ups,
    );
    out.gauge_f64(
        "shoal_clock_skew_seconds",
        "The largest clock difference with a peer heard lately, either way.",
        t.stats.max_skew_ms as f64 / 1000.0,
    );
    out.counter(
        "shoal_keyring_refused_total",
        "Keyrings and keyring changes from peers refused: too far ahead, more changes than \
         generations, a retired key put back, or the key they came sealed with taken out.",
        t.stats.keyring_refused,
    );
    out.counter(
        "shoal_key_material_withheld_total",
        "Keyring messages carrying keys not sent to a member with no member key bound to its \
         name (keys travel only sealed to each member's own key; it gets them once bound).",
        t.stats.key_material_withheld,
    );
    out.counter(
        "shoal_key_material_refused_total",
        "Keyring changes and rings from peers refused because they did not come sealed to this \
         agent's member key by the member bound to their sender's name (a bare ring key).",
        t.stats.key_material_refused,
    );
    out.counter(
        "shoal_operator_refused_total",
        "Operator commands (force-leave, cluster-wide thaw) refused because they were not \
         authenticated as the member bound to their source address (a bare ring key).",
        t.stats.operator_refused,
    );
}

pub(crate) fn keys_view(node: &Node) -> KeysResponse {
    let ring = node.keyring();
    KeysResponse {
        encrypted: ring.is_some(),
        plaintext: node.plaintext_mode(),
        primary: ring.map(|r| r.primary().id().to_string()),
        keys: ring
            .map(|r| r.keys().iter().map(|k| k.id().to_string()).collect())
            .unwrap_or_default(),
        retired: ring
            .map(|r| r.retired().map(|k| k.id.to_string()).collect())
            .unwrap_or_default(),
    }
}

pub(crate) async fn list(State(st): State<ApiState>) -> Json<KeysResponse> {
    Json(keys_view(&st.shared.lock()))
}

pub(crate) async fn change(
    State(st): State<ApiState>,
    JsonBody(req): JsonBody<KeysRequest>,
) -> Result<Json<KeysChangeResponse>, HttpError> {
    let key = Key::parse(&req.key).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let key_id = key.id().to_string();
    let id = st
        .shared
        .with_node(|node, now| node.keys_change(now, req.op, key))
        .map_err(|e| match e {
            KeysError::Insecure => HttpError::new(StatusCode::CONFLICT, e.to_string()),
            KeysError::Key(k) => HttpError::new(StatusCode::CONFLICT, k.to_string()),
        })?;
    tracing::warn!(op = req.op.as_str(), key = %key_id, "keyring change requested through the API");
    let deadline = tokio::time::Instant::now() + KEYS_WAIT;
    let mut next_resend = tokio::time::Instant::now() + RESEND_EVERY;
    loop {
        let done = st.shared.lock().keys_rollout(id).is_none_or(|r| r.done());
        let now = tokio::time::Instant::now();
        if done || now >= deadline {
            break;
        }
        if now >= next_resend {
            next_resend = now + RESEND_EVERY;
            st.shared.with_node(|node, t| node.keys_resend(t, id));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let node = st.shared.lock();
    let report = node
        .keys_rollout(id)
        .map(|r| r.report())
        .unwrap_or_default();
    let mut out = KeysChangeResponse {
        op: req.op,
        key_id,
        asked: report.len(),
        confirmed: Vec::new(),
        missing: Vec::new(),
        refused: Vec::new(),
        keyring: keys_view(&node),
    };
    for (name, c) in report {
        match c {
            Confirm::Confirmed => out.confirmed.push(name),
            Confirm::Pending => out.missing.push(name),
            Confirm::Refused(error) => out.refused.push(Refusal { name, error }),
        }
    }
    Ok(Json(out))
}
