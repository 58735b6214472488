//! The client's methods, one per route of the local API (`GET /v1/members`, the keys, the
//! services and checks, events and queries, tags, join and leave, the guard, `/metrics`):
//! each builds its path and body and decodes the answer through the transport in `mod.rs`.
//!
//! Must not print anything (the CLI does) and must not interpret the membership data.

use super::{
    api_error, encode_segment, path_with, Client, ClientError, MemberQuery, QueryArgs,
    REQUEST_TIMEOUT,
};
use crate::api::types::{
    CoordinatesResponse, EventFireResponse, EventsResponse, ForceLeaveResponse, GuardResponse,
    JoinRequest, JoinResponse, LeaveResponse, MemberResponse, MembersResponse, QueryResponse,
    RttResponse, SelfResponse, ServiceRequest, ServiceResponse, ServicesResponse, StatsResponse,
    TagsRequest,
};
use hyper::Method;
use std::collections::BTreeMap;
use std::time::Duration;

impl Client {
    /// `GET /v1/members` with filters.
    pub async fn members(&self, q: &MemberQuery) -> Result<MembersResponse, ClientError> {
        let path = {
            let mut s = form_urlencoded::Serializer::new(String::new());
            q.append(&mut s);
            path_with("/v1/members", s)
        };
        self.get(&path).await
    }

    /// `GET /v1/members` as the agent wrote it (every field, including the ones this
    /// version of the client does not know, e.g. the wall-clock `since`).
    pub async fn members_json(&self, q: &MemberQuery) -> Result<serde_json::Value, ClientError> {
        let path = {
            let mut s = form_urlencoded::Serializer::new(String::new());
            q.append(&mut s);
            path_with("/v1/members", s)
        };
        self.get(&path).await
    }

    /// Blocking query: answers once the agent's index is greater than `index`, or after
    /// `wait` (the agent caps it at 5 minutes).
    pub async fn members_after(
        &self,
        q: &MemberQuery,
        index: u64,
        wait: Duration,
    ) -> Result<MembersResponse, ClientError> {
        let path = {
            let mut s = form_urlencoded::Serializer::new(String::new());
            q.append(&mut s);
            s.append_pair("index", &index.to_string());
            s.append_pair("wait", &format!("{}ms", wait.as_millis()));
            path_with("/v1/members", s)
        };
        self.call(Method::GET, &path, None::<&()>, wait + REQUEST_TIMEOUT)
            .await
    }

    /// `GET /v1/members/{name}`.
    pub async fn member(&self, name: &str) -> Result<MemberResponse, ClientError> {
        self.get(&format!("/v1/members/{}", encode_segment(name)))
            .await
    }

    /// `GET /v1/members/{name}/history` as the agent wrote it (with the wall-clock `at` of
    /// each transition beside `at_ms`).
    pub async fn member_history_json(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/v1/members/{}/history", encode_segment(name)))
            .await
    }

    /// `GET /v1/self`.
    pub async fn local(&self) -> Result<SelfResponse, ClientError> {
        self.get("/v1/self").await
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Result<StatsResponse, ClientError> {
        self.get("/v1/stats").await
    }

    /// `GET /v1/rtt/{a}` (from this agent) or `GET /v1/rtt/{a}/{b}`.
    pub async fn rtt(&self, a: &str, b: Option<&str>) -> Result<RttResponse, ClientError> {
        let path = match b {
            None => format!("/v1/rtt/{}", encode_segment(a)),
            Some(b) => format!("/v1/rtt/{}/{}", encode_segment(a), encode_segment(b)),
        };
        self.get(&path).await
    }

    /// `GET /v1/coordinates`.
    pub async fn coordinates(&self) -> Result<CoordinatesResponse, ClientError> {
        self.get("/v1/coordinates").await
    }

    /// `GET /v1/keys`.
    pub async fn keys(&self) -> Result<crate::api::keys::KeysResponse, ClientError> {
        self.get("/v1/keys").await
    }

    /// `POST /v1/keys`: a keyring change spread to the cluster (waits for confirmations).
    pub async fn keys_change(
        &self,
        op: shoal_core::KeyOpKind,
        key: &str,
    ) -> Result<crate::api::keys::KeysChangeResponse, ClientError> {
        let body = crate::api::keys::KeysRequest {
            op,
            key: key.to_string(),
        };
        self.call(
            Method::POST,
            "/v1/keys",
            Some(&body),
            REQUEST_TIMEOUT + crate::api::keys::KEYS_WAIT,
        )
        .await
    }

    /// `GET /v1/keys/members`.
    pub async fn member_keys(
        &self,
    ) -> Result<crate::api::member_keys::MemberKeysResponse, ClientError> {
        self.get("/v1/keys/members").await
    }

    /// `POST /v1/keys/forget/{name}`: unbinds `name`'s key on this agent.
    pub async fn forget_member_key(
        &self,
        name: &str,
    ) -> Result<crate::api::member_keys::ForgetResponse, ClientError> {
        let path = format!(
            "/v1/keys/forget/{}",
            form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        self.call(Method::POST, &path, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// `GET /v1/services`.
    pub async fn services(&self) -> Result<ServicesResponse, ClientError> {
        self.get("/v1/services").await
    }

    /// `GET /v1/services/{name}`, optionally filtered by status words.
    pub async fn service(
        &self,
        name: &str,
        status: &[String],
    ) -> Result<ServiceResponse, ClientError> {
        let path = {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for st in status {
                s.append_pair("status", st);
            }
            path_with(&format!("/v1/services/{}", encode_segment(name)), s)
        };
        self.get(&path).await
    }

    /// `GET /v1/services`, only the passing view when `passing`.
    pub async fn services_passing(&self, passing: bool) -> Result<ServicesResponse, ClientError> {
        self.get(if passing {
            "/v1/services?passing"
        } else {
            "/v1/services"
        })
        .await
    }

    /// `GET /v1/services/{name}`, only the passing view when `passing`.
    pub async fn service_passing(
        &self,
        name: &str,
        passing: bool,
    ) -> Result<ServiceResponse, ClientError> {
        let path = format!(
            "/v1/services/{}{}",
            encode_segment(name),
            if passing { "?passing" } else { "" }
        );
        self.get(&path).await
    }

    /// `GET /v1/checks`.
    pub async fn checks(&self) -> Result<crate::api::health::ChecksResponse, ClientError> {
        self.get("/v1/checks").await
    }

    /// `PUT /v1/checks/{id}/{action}` (`pass`, `warn` or `fail`) with an optional note.
    pub async fn check_update(
        &self,
        id: &str,
        action: &str,
        note: Option<&str>,
    ) -> Result<crate::api::health::CheckResponse, ClientError> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(n) = note {
            q.append_pair("note", n);
        }
        let path = path_with(
            &format!(
                "/v1/checks/{}/{}",
                encode_segment(id),
                encode_segment(action)
            ),
            q,
        );
        self.call(Method::PUT, &path, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// `PUT /v1/event/{name}`: fires a user event (`coalesce: false` delivers every one).
    pub async fn fire_event(
        &self,
        name: &str,
        payload: Vec<u8>,
        coalesce: bool,
    ) -> Result<EventFireResponse, ClientError> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if !coalesce {
            q.append_pair("coalesce", "false");
        }
        let path = path_with(&format!("/v1/event/{}", encode_segment(name)), q);
        self.call_bytes(Method::PUT, &path, payload, REQUEST_TIMEOUT)
            .await
    }

    /// `GET /v1/events`: the recent user events.
    pub async fn events(&self) -> Result<EventsResponse, ClientError> {
        self.get("/v1/events").await
    }

    /// `POST /v1/query/{name}`: asks the matching members, waits for their answers.
    pub async fn query(
        &self,
        name: &str,
        payload: Vec<u8>,
        filter: &QueryArgs,
    ) -> Result<QueryResponse, ClientError> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for n in &filter.nodes {
            q.append_pair("node", n);
        }
        for t in &filter.tags {
            q.append_pair("tag", t);
        }
        if let Some(s) = &filter.service {
            q.append_pair("service", s);
        }
        if let Some(t) = &filter.timeout {
            q.append_pair("timeout", t);
        }
        let path = path_with(&format!("/v1/query/{}", encode_segment(name)), q);
        // The agent answers when the query ends (at most its timeout, at most 300 s).
        let timeout = REQUEST_TIMEOUT + crate::api::routes::MAX_WAIT;
        self.call_bytes(Method::POST, &path, payload, timeout).await
    }

    /// `PUT /v1/tags`: sets and deletes tags of the local node.
    pub async fn set_tags(
        &self,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    ) -> Result<MemberResponse, ClientError> {
        let body = TagsRequest { set, delete };
        self.call(Method::PUT, "/v1/tags", Some(&body), REQUEST_TIMEOUT)
            .await
    }

    /// `DELETE /v1/tags/{key}`.
    pub async fn delete_tag(&self, key: &str) -> Result<MemberResponse, ClientError> {
        let path = format!("/v1/tags/{}", encode_segment(key));
        self.call(Method::DELETE, &path, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// `PUT /v1/services`: registers or replaces a service of the local node.
    pub async fn register_service(
        &self,
        svc: &ServiceRequest,
    ) -> Result<MemberResponse, ClientError> {
        self.call(Method::PUT, "/v1/services", Some(svc), REQUEST_TIMEOUT)
            .await
    }

    /// `DELETE /v1/services/{name}`.
    pub async fn deregister_service(&self, name: &str) -> Result<MemberResponse, ClientError> {
        let path = format!("/v1/services/{}", encode_segment(name));
        self.call(Method::DELETE, &path, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// `POST /v1/reports`: outcomes of calls to instances (outlier ejection).
    pub async fn report(
        &self,
        reports: Vec<crate::api::reports::Report>,
    ) -> Result<crate::api::reports::ReportsResponse, ClientError> {
        let body = crate::api::reports::ReportsRequest { reports };
        self.call(Method::POST, "/v1/reports", Some(&body), REQUEST_TIMEOUT)
            .await
    }

    /// `POST /v1/join`.
    pub async fn join(&self, addrs: Vec<String>) -> Result<JoinResponse, ClientError> {
        let body = JoinRequest { addrs };
        self.call(Method::POST, "/v1/join", Some(&body), REQUEST_TIMEOUT)
            .await
    }

    /// `POST /v1/leave`: returns once the agent has sent the leave.
    pub async fn leave(&self) -> Result<LeaveResponse, ClientError> {
        self.call(Method::POST, "/v1/leave", None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// `GET /v1/guard`.
    /// `POST /v1/force-leave/{name}`.
    pub async fn force_leave(&self, name: &str) -> Result<ForceLeaveResponse, ClientError> {
        let path = format!(
            "/v1/force-leave/{}",
            form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
        );
        self.call(Method::POST, &path, None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    pub async fn guard(&self) -> Result<GuardResponse, ClientError> {
        self.get("/v1/guard").await
    }

    /// `POST /v1/guard/freeze` (operator override).
    pub async fn guard_freeze(&self) -> Result<GuardResponse, ClientError> {
        self.call(
            Method::POST,
            "/v1/guard/freeze",
            None::<&()>,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/guard/thaw` (operator override).
    pub async fn guard_thaw(&self) -> Result<GuardResponse, ClientError> {
        self.call(Method::POST, "/v1/guard/thaw", None::<&()>, REQUEST_TIMEOUT)
            .await
    }

    /// `POST /v1/guard/thaw?cluster=true`: thaw here and on every agent this one reaches.
    pub async fn guard_thaw_cluster(&self) -> Result<GuardResponse, ClientError> {
        self.call(
            Method::POST,
            "/v1/guard/thaw?cluster=true",
            None::<&()>,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `GET /metrics` (Prometheus text).
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let ans = self.raw(Method::GET, "/metrics", None).await?;
        if !ans.status.is_success() {
            return Err(api_error(&ans));
        }
        Ok(String::from_utf8_lossy(&ans.body).into_owned())
    }
}
