//! What a node's own tags, services and checks are when two sources set them: the config file
//! and the local API. One rule for a reload (SIGHUP) and for a restart: only what changed
//! **in the file** since it was last read applies (the file wins for that key); a key removed
//! from the file is removed unless it was changed through the API since; everything else,
//! in particular whatever was set or deleted through the API, stays as it is.
//!
//! Pure functions, used by the agent (reload, restart with its persisted registrations) and by
//! the simulator (a restarted host's metadata). Must not do I/O nor decide anything else.

use crate::meta::NodeMeta;
use std::collections::{BTreeMap, BTreeSet};

/// Merges one table (tags, services, checks by service) three ways; see the module doc.
pub fn merge_map<V: Clone + PartialEq>(
    current: &BTreeMap<String, V>,
    old_file: &BTreeMap<String, V>,
    new_file: &BTreeMap<String, V>,
) -> BTreeMap<String, V> {
    let mut out = current.clone();
    let keys: BTreeSet<&String> = old_file.keys().chain(new_file.keys()).collect();
    for k in keys {
        let (old, new) = (old_file.get(k), new_file.get(k));
        if old == new {
            continue;
        }
        match new {
            Some(v) => {
                out.insert(k.clone(), v.clone());
            }
            None => {
                if current.get(k) == old {
                    out.remove(k);
                }
            }
        }
    }
    out
}

/// The metadata after a reload or a restart: `current` (what the node had, file and API
/// changes together), `old_file` (what the file said when last read), `new_file` (what it
/// says now).
pub fn merge_meta(current: &NodeMeta, old_file: &NodeMeta, new_file: &NodeMeta) -> NodeMeta {
    NodeMeta {
        tags: merge_map(&current.tags, &old_file.tags, &new_file.tags),
        services: merge_map(&current.services, &old_file.services, &new_file.services),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Service;

    fn meta(tags: &[(&str, &str)], services: &[(&str, u16)]) -> NodeMeta {
        NodeMeta {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            services: services
                .iter()
                .map(|(n, p)| {
                    (
                        n.to_string(),
                        Service {
                            name: n.to_string(),
                            port: *p,
                            tags: BTreeMap::new(),
                            health: None,
                            health_output: None,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn api_changes_survive_file_changes_apply() {
        let old_file = meta(
            &[("zone", "a"), ("rack", "1"), ("env", "prod")],
            &[("web", 80)],
        );
        // Through the API: role set, env changed, pg registered, web deregistered.
        let current = meta(
            &[
                ("zone", "a"),
                ("rack", "1"),
                ("env", "staging"),
                ("role", "db"),
            ],
            &[("pg", 5432)],
        );
        // The file now: zone changed, rack and env removed, api added; web unchanged.
        let new_file = meta(&[("zone", "b")], &[("web", 80), ("api", 9000)]);
        let m = merge_meta(&current, &old_file, &new_file);
        assert_eq!(
            m,
            meta(
                &[("zone", "b"), ("env", "staging"), ("role", "db")],
                &[("pg", 5432), ("api", 9000)]
            )
        );
        // The same file read again changes nothing.
        assert_eq!(merge_meta(&m, &new_file, &new_file), m);
    }
}
