//! The agent's seeds: resolving the configured `join` addresses (IP literals at once, host
//! names with a bounded lookup, matching the family of the advertised address) and retrying
//! the unresolved ones with backoff, joining each once it resolves.
//!
//! Owns `resolve_seeds` and `retry_seeds`. Must not decide whom else to join: the peers of a
//! restored snapshot are added by the core (`Node::restore`), the same for the simulator.

use crate::agent::shared::AgentShared;
use crate::config::seed_with_port;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long a seed host name may take to resolve at start before it is retried later.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Picks the address of `host` matching the family of our advertised address.
fn pick(addrs: impl Iterator<Item = SocketAddr>, me: SocketAddr) -> Option<SocketAddr> {
    let all: Vec<SocketAddr> = addrs.collect();
    all.iter()
        .find(|a| a.is_ipv4() == me.is_ipv4())
        .or_else(|| all.first())
        .copied()
}

/// Resolves seeds: IP literals at once, host names with a bounded lookup. Returns the
/// resolved addresses and the seeds to retry later.
pub(crate) async fn resolve_seeds(
    join: &[String],
    me: SocketAddr,
) -> (Vec<SocketAddr>, Vec<String>) {
    let mut seeds = Vec::new();
    let mut unresolved = Vec::new();
    for j in join {
        let s = seed_with_port(j);
        if let Ok(a) = s.parse::<SocketAddr>() {
            seeds.push(a);
            continue;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(s.clone())).await {
            Ok(Ok(addrs)) => match pick(addrs, me) {
                Some(a) => seeds.push(a),
                None => unresolved.push(s),
            },
            Ok(Err(e)) => {
                warn!(seed = %s, error = %e, "cannot resolve seed; will retry");
                unresolved.push(s);
            }
            Err(_) => {
                warn!(seed = %s, "resolving seed timed out; will retry");
                unresolved.push(s);
            }
        }
    }
    seeds.retain(|a| *a != me);
    seeds.dedup();
    (seeds, unresolved)
}

/// Retries unresolvable seeds with backoff (1 s doubling to 60 s) and joins them once they
/// resolve.
pub(crate) async fn retry_seeds(
    mut pending: Vec<String>,
    me: SocketAddr,
    shared: Arc<AgentShared>,
) {
    let mut backoff = Duration::from_secs(1);
    while !pending.is_empty() {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
        let mut still = Vec::new();
        for s in pending {
            let found =
                match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(s.clone()))
                    .await
                {
                    Ok(Ok(addrs)) => pick(addrs, me),
                    _ => None,
                };
            match found {
                Some(a) => {
                    info!(seed = %s, addr = %a, "seed resolved; joining");
                    if let Err(e) = shared.with_node(|n, now| n.join(now, &[a])) {
                        debug!(error = %e, "join after resolving a seed refused");
                        return;
                    }
                }
                None => still.push(s),
            }
        }
        pending = still;
    }
}
