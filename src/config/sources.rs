//! The three sources of configuration and their order: the TOML file < the environment
//! (`SHOAL_*`) < the `shoal agent` flags, each read into the table's `root::Raw` and laid over
//! the one below. Also the conversions the table names for environment values (`from_env`) and
//! flag values (`from_flag`).
//!
//! Reads the config file and nothing else; must not parse or check values (keys.rs rows do)
//! nor apply defaults (validate.rs does).

use super::keys::root;
use super::{invalid, AgentArgs, ConfigError, ServiceConfig};
use std::path::{Path, PathBuf};

/// Every source laid over the one below, and the config file read (if any).
pub(super) fn layered(
    args: &AgentArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(root::Raw, Option<PathBuf>), ConfigError> {
    let from_env = root::Raw::from_env(env);
    let from_flags = root::Raw::from_flags(args)?;
    let config_file = from_flags
        .config
        .clone()
        .or_else(|| from_env.config.clone());
    let mut raw = match &config_file {
        Some(path) => read_file(path)?,
        None => root::Raw::default(),
    };
    raw.overlay(from_env);
    raw.overlay(from_flags);
    Ok((raw, config_file))
}

/// Reads and parses a config file (unknown keys and wrong types are refused here).
fn read_file(path: &Path) -> Result<root::Raw, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

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
