//! Consul's coordinate routes on the Consul-compatible API: `GET /v1/coordinate/nodes` and
//! `GET /v1/coordinate/node/NODE`, in Consul's JSON shape (`Node`, `Segment`, `Coord` with
//! `Vec`, `Error`, `Adjustment`, `Height` in seconds), from the coordinates this agent knows
//! (its own and those of the members it has probed: `core::coordinate`).
//!
//! Owns those shapes only; `?near=` ordering is `api::routes::coords`'s. Must not change the
//! node.

use super::{answer, read, HttpResult};
use crate::api::error::HttpError;
use crate::api::state::ApiState;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use serde::Serialize;
use shoal_core::Coordinate;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Coord {
    vec: Vec<f64>,
    error: f64,
    adjustment: f64,
    height: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeCoord {
    node: String,
    segment: String,
    coord: Coord,
}

fn entry(name: &str, c: &Coordinate) -> NodeCoord {
    NodeCoord {
        node: name.to_string(),
        segment: String::new(),
        coord: Coord {
            vec: c.vec.to_vec(),
            error: c.error,
            adjustment: c.adjustment,
            height: c.height,
        },
    }
}

/// Every member's coordinate this agent knows, its own included (sorted by name).
pub(super) async fn nodes(State(st): State<ApiState>, uri: Uri) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    let mut coords = st.shared.lock().coordinates();
    coords.sort_by(|a, b| a.0.cmp(&b.0));
    let body: Vec<NodeCoord> = coords.iter().map(|(n, c)| entry(n, c)).collect();
    Ok(answer(&v, &body))
}

/// One member's coordinate, as a list of one (404 when unknown, as Consul answers).
pub(super) async fn node(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
) -> HttpResult<Response> {
    let (v, _) = read(&st, &uri).await?;
    let coords = st.shared.lock().coordinates();
    let Some((n, c)) = coords.iter().find(|(n, _)| **n == *name) else {
        return Err(HttpError::not_found(format!(
            "no coordinate for node {name:?} here"
        )));
    };
    Ok(answer(&v, &[entry(n, c)]))
}
