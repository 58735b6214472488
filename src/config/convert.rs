//! The conversions the key table names for the sources above the file: environment values
//! (`from_env`) and `shoal agent` flag values (`from_flag`) into a key's raw value.
//!
//! Owns these conversions and nothing else: it must not name a key (keys.rs does), read a
//! source (sources.rs does) nor check a value's range (keys.rs rows do). A leaf below the
//! table: it imports neither keys.rs nor sources.rs.

use super::{invalid, ConfigError, ServiceConfig};

/// Environment values into a key's raw value. An unset variable gives nothing.
pub(super) mod from_env {
    /// The value, unless it is blank.
    pub fn text<T: From<String>>(v: String) -> Option<T> {
        (!v.trim().is_empty()).then(|| T::from(v))
    }

    /// The value, unless it is empty.
    pub fn nonempty<T: From<String>>(v: String) -> Option<T> {
        (!v.is_empty()).then(|| T::from(v))
    }

    /// The value as it is, even empty (an empty cluster label is a label).
    pub fn keep(v: String) -> Option<String> {
        Some(v)
    }

    /// A comma-separated list (blank items skipped), unless the value is blank.
    pub fn list(v: String) -> Option<Vec<String>> {
        text::<String>(v).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

/// Flag values into a key's raw value; `flag` (`--tag`) names the flag in errors. An absent
/// flag gives nothing.
pub(super) mod from_flag {
    use super::super::parse;
    use super::*;
    use shoal_core::GuardMode;
    use std::collections::BTreeMap;

    type Given<T> = Result<Option<T>, ConfigError>;

    pub fn opt<T: Clone>(v: &Option<T>, _flag: &str) -> Given<T> {
        Ok(v.clone())
    }

    /// A value clap parsed, back in the spelling the file uses.
    pub fn shown<T: std::fmt::Display>(v: &Option<T>, _flag: &str) -> Given<String> {
        Ok(v.as_ref().map(T::to_string))
    }

    pub fn guard_mode(v: &Option<GuardMode>, _flag: &str) -> Given<String> {
        Ok(v.map(|m| {
            match m {
                GuardMode::Enforce => "enforce",
                GuardMode::Shadow => "shadow",
                GuardMode::Off => "off",
            }
            .to_string()
        }))
    }

    /// A repeatable flag: given at least once replaces the lower sources' list.
    pub fn list(v: &[String], _flag: &str) -> Given<Vec<String>> {
        Ok((!v.is_empty()).then(|| v.to_vec()))
    }

    /// A switch: given means true; absent leaves the lower sources' value.
    pub fn switch(v: &bool, _flag: &str) -> Given<bool> {
        Ok(v.then_some(true))
    }

    /// `--tag key=value`...
    pub fn tags(v: &[String], flag: &str) -> Given<BTreeMap<String, String>> {
        each(v, flag, parse::tag)
    }

    /// `--service name:port`...
    pub fn services(v: &[String], flag: &str) -> Given<Vec<ServiceConfig>> {
        each(v, flag, parse::service_flag)
    }

    /// A repeatable flag whose every value `parse` reads.
    fn each<T, C: FromIterator<T>>(
        v: &[String],
        flag: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Given<C> {
        if v.is_empty() {
            return Ok(None);
        }
        v.iter()
            .map(|s| parse(s).map_err(|m| invalid(flag, m)))
            .collect::<Result<C, _>>()
            .map(Some)
    }
}
