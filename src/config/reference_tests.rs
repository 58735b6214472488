//! The configuration reference (docs/configuration.md) against the key table: every key,
//! environment variable and `shoal agent` flag the table declares is in the reference, and the
//! reference lists none that does not exist. Also: the defaults the table states are the real ones.

use super::keys::{self, root};
use super::*;
use std::collections::BTreeSet;

const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// The text of the reference's section that starts with `heading` (up to the next heading of the
/// same level).
fn section(heading: &str) -> &'static str {
    let start = REFERENCE
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no {heading:?}"));
    let level = heading.split(' ').next().unwrap_or("##");
    let rest = &REFERENCE[start + heading.len() + 2..];
    let end = rest.find(&format!("\n{level} ")).unwrap_or(rest.len());
    &rest[..end]
}

/// The first fenced block of `lang` in `text`.
fn fenced<'a>(text: &'a str, lang: &str) -> &'a str {
    let open = format!("```{lang}\n");
    let start = text.find(&open).expect("a fenced block") + open.len();
    let len = text[start..].find("```").expect("a closed fenced block");
    &text[start..start + len]
}

/// Words of `text` that start with `prefix` and go on with `[A-Za-z0-9_-]`.
fn words(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i + prefix.len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(tail.len());
        if len > 0 {
            found.insert(format!("{prefix}{}", &tail[..len]));
        }
        rest = &tail[len..];
    }
    found
}

fn same_sets(what: &str, table: BTreeSet<String>, readme: BTreeSet<String>) {
    let missing: Vec<_> = table.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&table).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md's {what}: missing {missing:?}; not in the key table (src/config/keys.rs) {unknown:?}"
    );
}

#[test]
fn readme_toml_reference_lists_every_key_and_only_keys() {
    let block = fenced(section("## The configuration file"), "toml");
    let doc: toml::Table = toml::from_str(block).expect("the reference is TOML");
    let tables: BTreeSet<&str> = keys::all()
        .filter_map(|k| k.path.split_once('.').map(|(t, _)| t))
        .collect();
    let mut readme = BTreeSet::new();
    for (k, v) in &doc {
        match v.as_table() {
            Some(t) if tables.contains(k.as_str()) => {
                readme.extend(t.keys().map(|sub| format!("{k}.{sub}")))
            }
            _ => {
                readme.insert(k.clone());
            }
        }
    }
    let table = keys::all()
        .filter(|k| k.in_file)
        .map(|k| k.path.to_string())
        .collect();
    same_sets("TOML reference (## Configuration)", table, readme);
    // Wrong types are refused as they would be in a config file.
    let _: root::Raw = toml::from_str(block).expect("the reference parses as a config file");
}

#[test]
fn readme_lists_every_environment_variable() {
    let text = section("## The configuration file");
    let intro = &text[..text.find("```toml").expect("the reference block")];
    let table = keys::env_vars().map(str::to_string).collect();
    same_sets(
        "environment variables (## The configuration file)",
        table,
        words(intro, "SHOAL_"),
    );
}

#[test]
fn readme_lists_every_agent_flag() {
    let block = fenced(section("## Flags of `shoal agent` (a stable contract)"), "");
    let table = keys::all()
        .filter_map(|k| k.flag)
        .map(str::to_string)
        .collect();
    same_sets("flags of shoal agent", table, words(block, "--"));
}

#[test]
fn clap_reads_only_the_variables_the_table_names() {
    let cmd = <AgentArgs as clap::Args>::augment_args(clap::Command::new("agent"));
    for arg in cmd.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let long = format!("--{}", arg.get_long().unwrap_or_default());
        let key = keys::all().find(|k| k.flag == Some(long.as_str()));
        assert_eq!(
            key.and_then(|k| k.env),
            env.to_str(),
            "{long}: clap reads {env:?}, the table says otherwise"
        );
    }
}

/// Writing a key's stated default into the file changes nothing.
#[test]
fn the_stated_defaults_are_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.toml");
    let base = "name = \"n1\"\nadvertise = \"10.0.0.5:7946\"\n";
    let load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let args = AgentArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        Config::load_with_env(&args, &|_| None)
    };
    let plain = load(base).expect("base config loads");
    let mut checked = 0;
    for k in keys::all().filter(|k| k.in_file) {
        let Some(default) = k.default else { continue };
        let text = match k.path.split_once('.') {
            None => format!("{base}{} = {default}\n", k.path),
            Some((table, key)) => format!("{base}[{table}]\n{key} = {default}\n"),
        };
        let with = load(&text).unwrap_or_else(|e| panic!("{}: {e}", k.path));
        assert_eq!(with, plain, "{} = {default} is not its default", k.path);
        checked += 1;
    }
    assert!(checked > 40, "only {checked} defaults checked");
}

#[test]
fn every_key_is_documented_once() {
    let mut seen = BTreeSet::new();
    for k in keys::all() {
        assert!(seen.insert(k.path), "{} declared twice", k.path);
        assert!(!k.doc.trim().is_empty(), "{} has no doc", k.path);
        assert!(
            k.default.is_some() != k.default_is.is_some(),
            "{}: one default, in TOML or in words",
            k.path
        );
    }
}

/// Each variable the table names gives its key what the file would: the reference's example value
/// of every key, once through its `SHOAL_*` variable and once through the file.
#[test]
fn each_environment_variable_sets_its_key() {
    let doc: toml::Table =
        toml::from_str(fenced(section("## The configuration file"), "toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shoal.toml");
    let load = |text: &str, env: Option<(&str, String)>| {
        std::fs::write(&path, text).unwrap();
        let args = AgentArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        Config::load_with_env(&args, &|k| {
            env.as_ref()
                .filter(|(v, _)| *v == k)
                .map(|(_, s)| s.clone())
        })
        .map_err(|e| e.to_string())
    };
    let mut checked = 0;
    for k in keys::all().filter(|k| k.in_file) {
        let Some(var) = k.env else { continue };
        let (table, key) = match k.path.split_once('.') {
            Some((t, key)) => (Some(t), key),
            None => (None, k.path),
        };
        let value = match table {
            Some(t) => &doc[t][key],
            None => &doc[key],
        };
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        let base = if k.path == "bind" {
            "advertise = \"10.0.0.5:7946\"\n"
        } else {
            "bind = \"127.0.0.1:7946\"\n"
        };
        let from_env = load(base, Some((var, text)));
        let line = format!("{key} = {value}\n");
        let from_file = match table {
            Some(t) => load(&format!("{base}[{t}]\n{line}"), None),
            None => load(&format!("{base}{line}"), None),
        };
        assert_eq!(from_env, from_file, "{var} and {}", k.path);
        checked += 1;
    }
    assert!(checked >= 16, "only {checked} variables checked");
}
