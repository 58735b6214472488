//! The member-key routes: `GET /v1/keys/members` (which key speaks for which name, as this
//! agent bound them) and `POST /v1/keys/forget/{name}` (unbind a name on this agent, for a
//! host rebuilt with a new key under the same name).
//!
//! Owns the answer shapes of these routes. Must not persist the table (the event loop does,
//! when the node reports a change) and must not spread a forget to other agents: any key
//! holder could then unbind any name (docs/security.md, "A rebuilt host").

use crate::api::error::HttpError;
use crate::api::state::ApiState;
use axum::extract::{Path, State};
use axum::Json;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use shoal_core::MemberPub;

/// One name bound to a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberKeyView {
    pub name: String,
    /// The first 8 bytes of the signing key, hex (what logs show).
    pub fingerprint: String,
    /// The Ed25519 key its records are signed with, base64.
    pub sign: String,
    /// The X25519 key key material is sealed to, base64.
    pub seal: String,
}

impl MemberKeyView {
    fn new(name: &str, k: &MemberPub) -> MemberKeyView {
        MemberKeyView {
            name: name.to_string(),
            fingerprint: k.fingerprint(),
            sign: B64.encode(k.sign),
            seal: B64.encode(k.seal),
        }
    }
}

/// `GET /v1/keys/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberKeysResponse {
    /// This agent's own key (`None`: it has none).
    pub own: Option<MemberKeyView>,
    /// Every name bound to a key on this agent, by name.
    pub members: Vec<MemberKeyView>,
}

/// `POST /v1/keys/forget/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetResponse {
    pub name: String,
    /// The key the name was bound to.
    pub forgotten: MemberKeyView,
}

pub(crate) async fn list(State(st): State<ApiState>) -> Json<MemberKeysResponse> {
    let node = st.shared.lock();
    let own_name = node.config().name.clone();
    Json(MemberKeysResponse {
        own: node.member_key().map(|k| MemberKeyView::new(&own_name, &k)),
        members: node
            .bound_keys()
            .iter()
            .map(|(n, k)| MemberKeyView::new(n, k))
            .collect(),
    })
}

pub(crate) async fn forget(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<ForgetResponse>, HttpError> {
    let own = st.shared.lock().config().name.clone();
    if name == own {
        return Err(HttpError::bad_request(format!(
            "{name:?} is this agent: its own key is not forgotten (move the data directory's \
             member.key away and restart to make a new one)"
        )));
    }
    let old = st
        .shared
        .with_node(|node, _| node.forget_member_key(&name))
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "no key is bound to {name:?} on this agent; list them with GET /v1/keys/members"
            ))
        })?;
    tracing::warn!(
        node = %name,
        key = %old.fingerprint(),
        "member key forgotten through the API: the next key that signs a record of this name is bound"
    );
    Ok(Json(ForgetResponse {
        forgotten: MemberKeyView::new(&name, &old),
        name,
    }))
}
