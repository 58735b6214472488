//! JSON request bodies and query strings as every API handler reads them: `JsonBody` (any
//! content type, errors in the API's shape with the expected `BodyShape`) and `query_pairs`.
//!
//! Owns only turning raw bytes into values (413 over the size limit, 400 with the expected
//! shape on malformed JSON). A leaf of the API: must not know the routes, the state or the
//! node.

use crate::api::error::HttpError;
use crate::api::MAX_BODY;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, Uri};
use serde::de::DeserializeOwned;

/// A JSON body, whatever its content type (so that `curl -d` works), with errors in the
/// API's shape: 413 over the size limit, 400 for malformed JSON with the expected shape.
pub(crate) struct JsonBody<T>(pub T);

pub(crate) trait BodyShape {
    const SHAPE: &'static str;
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
