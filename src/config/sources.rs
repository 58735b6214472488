//! The three sources of configuration and their order: the TOML file < the environment
//! (`SHOAL_*`) < the `shoal agent` flags, each read into the table's `root::Raw` and laid over
//! the one below. The conversions the table names for environment and flag values live in
//! `convert.rs`.
//!
//! Reads the config file and nothing else; must not parse or check values (keys.rs rows do)
//! nor apply defaults (validate.rs does).

use super::keys::root;
use super::{AgentArgs, ConfigError};
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
