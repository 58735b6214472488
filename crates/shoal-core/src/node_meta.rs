//! Node metadata: what an operator or app sets on a node (`NodeMeta`: tags and services,
//! each service's health), the limits of each part and their validation, and `MetaError`.
//!
//! Below `core::instances` and `core::meta` (the record, which also checks the encoded size
//! of a `NodeMeta`: `NodeMeta::validate` lives there); imports no other module of the core.
//! Must not decide membership and holds no state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// Limits on metadata, so that one record always fits in one datagram.
pub(crate) const MAX_KEY_LEN: usize = 64;
pub(crate) const MAX_VALUE_LEN: usize = 256;
pub(crate) const MAX_TAGS: usize = 32;
pub(crate) const MAX_SERVICES: usize = 32;
pub(crate) const MAX_SERVICE_TAGS: usize = 16;
/// Longest check output carried in a record (its first line, cut at a character boundary).
pub(crate) const MAX_OUTPUT_LEN: usize = 128;
/// Largest encoded record (the whole record must fit with a foca header in one datagram).
pub(crate) const MAX_RECORD_BYTES: usize = 1024;
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
/// A service instance's health.
pub enum Health {
    /// Its check passes.
    Passing,
    /// Its check warns.
    Warning,
    /// Its check fails.
    Critical,
}

impl Health {
    /// The health as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Passing => "passing",
            Health::Warning => "warning",
            Health::Critical => "critical",
        }
    }

    /// The health written as `s`, if any.
    pub fn parse(s: &str) -> Option<Health> {
        Some(match s {
            "passing" => Health::Passing,
            "warning" => Health::Warning,
            "critical" => Health::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a check's output, cut to at most [`MAX_OUTPUT_LEN`] bytes at a
/// character boundary, control characters replaced by spaces: what a record may carry.
pub fn output_line(text: &str) -> String {
    let line = text.trim_start().lines().next().unwrap_or("").trim_end();
    let mut out = String::with_capacity(line.len().min(MAX_OUTPUT_LEN));
    for c in line.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_OUTPUT_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// A service offered by a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The service's name.
    pub name: String,
    /// Its port.
    pub port: u16,
    #[serde(default)]
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Health as reported by the owner: its checks' worst status (or what the app set).
    #[serde(default)]
    pub health: Option<Health>,
    /// The first line of the output of the check that decided `health` (at most
    /// [`MAX_OUTPUT_LEN`] bytes, no control characters).
    #[serde(default)]
    pub health_output: Option<String>,
}

/// What a node says about itself: tags and services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    #[serde(default)]
    /// The node's tags.
    pub tags: BTreeMap<String, String>,
    /// Keyed by instance id (`core::instances`; the service's name unless the instance was
    /// given an id). A record's fixed part carries one instance per name, keyed by name
    /// (`instances::serialize_fixed`), the others travel in field `record.instances`.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
/// Metadata that breaks a limit or does not decode.
pub enum MetaError {
    #[error("record refused: {0}")]
    /// Refused (why).
    Refused(&'static str),
    #[error(
        "tag key {0:?} is invalid: keys are 1 to 64 bytes of letters, digits, '.', '_', '-', '/'"
    )]
    /// Not a valid tag key.
    BadKey(String),
    #[error("value for {key:?} is {len} bytes; the limit is {MAX_VALUE_LEN}")]
    /// A tag value is too long.
    ValueTooLong {
        /// The tag.
        key: String,
        /// Its length.
        len: usize,
    },
    #[error("too many tags: {0}; the limit is {MAX_TAGS}")]
    /// Too many tags.
    TooManyTags(usize),
    #[error("too many services: {0}; the limit is {MAX_SERVICES}")]
    /// Too many services.
    TooManyServices(usize),
    #[error("service {0:?} has too many tags; the limit is {MAX_SERVICE_TAGS}")]
    /// Too many tags on this service.
    TooManyServiceTags(String),
    #[error("service name {0:?} is invalid: 1 to 64 bytes of letters, digits, '.', '_', '-'")]
    /// Not a valid service name.
    BadServiceName(String),
    #[error(
        "service instance id {0:?} is invalid: 1 to 64 bytes of letters, digits, '.', '_', ':', '-'"
    )]
    /// Not a valid instance id.
    BadInstanceId(String),
    #[error("service instance id {0:?} is given twice")]
    /// Two instances with this id.
    DuplicateInstance(String),
    #[error("service {0:?} has port 0; give the port it listens on")]
    /// Not a valid port.
    BadPort(String),
    #[error(
        "service {0:?} has a health output over {MAX_OUTPUT_LEN} bytes or with control characters"
    )]
    /// A check output that is too long or not one line.
    BadOutput(String),
    #[error(
        "metadata encodes to {0} bytes; the limit is {MAX_RECORD_BYTES}: remove tags or services"
    )]
    /// The encoded record is too large (its size).
    TooLarge(usize),
    #[error("undecodable metadata record: {0}")]
    /// Did not decode.
    Decode(String),
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

fn valid_service_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

pub(crate) fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), MetaError> {
    for (k, v) in tags {
        if !valid_key(k) {
            return Err(MetaError::BadKey(k.clone()));
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(MetaError::ValueTooLong {
                key: k.clone(),
                len: v.len(),
            });
        }
    }
    Ok(())
}

impl Service {
    /// Checks every limit.
    pub fn validate(&self) -> Result<(), MetaError> {
        if !valid_service_name(&self.name) {
            return Err(MetaError::BadServiceName(self.name.clone()));
        }
        if self.port == 0 {
            return Err(MetaError::BadPort(self.name.clone()));
        }
        if self.tags.len() > MAX_SERVICE_TAGS {
            return Err(MetaError::TooManyServiceTags(self.name.clone()));
        }
        if let Some(o) = &self.health_output {
            if o.len() > MAX_OUTPUT_LEN || o.chars().any(char::is_control) {
                return Err(MetaError::BadOutput(self.name.clone()));
            }
        }
        validate_tags(&self.tags)
    }
}
