//! Scenario files: what to simulate (cluster, network, guard, services, faults, measures).
//!
//! Owns the TOML shape of `simulations/*.toml`, duration strings ("30s", "500ms", "5m"),
//! validation with errors that name the offending field, and the seeded choice of which
//! nodes a fault hits (independent of the guard mode, so `enforce` and `off` runs see the
//! same faults). Must not run anything: the world (`sim::world`) does.

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shoal_core::{GuardConfig, GuardMode, Profile, Timings};
use std::fmt;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid scenario TOML: {0}")]
    Toml(String),
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// A duration written as a string ("250ms", "30s", "5m", "1h", "1m30s") or integer ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn ms(self) -> u64 {
        self.0.as_millis() as u64
    }
    pub fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
}

/// Parses "1h", "5m", "30s", "250ms", "1.5s", "1m30s": the same syntax as the agent's config.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    shoal_core::parse_duration(s)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"250ms\" or \"5m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Dur, E> {
                u64::try_from(v)
                    .map(|ms| Dur(Duration::from_millis(ms)))
                    .map_err(|_| E::custom("negative duration"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Dur, E> {
                Ok(Dur(Duration::from_millis(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.ms();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// How nodes start.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// Nodes `0..seeds` are the seeds every other node joins through.
    pub seeds: usize,
    /// Seeds start at 0; every other node starts at a uniformly random time in this window.
    pub start_spread: Dur,
    /// Start as a formed cluster: every initial node starts at 0 already holding every other
    /// one (members and metadata records, as after a full state transfer), so the run
    /// measures a steady cluster under faults instead of the formation storm (which the
    /// join scenarios measure). `start_spread` is then unused.
    pub formed: bool,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            seeds: 3,
            start_spread: Dur::secs(5),
            formed: false,
        }
    }
}

/// The default network between every pair of nodes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSpec {
    /// One-way base latency.
    pub latency: Dur,
    /// Mean of an exponential extra delay per datagram (capped at 20x): reorders datagrams.
    pub jitter: Dur,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            latency: Dur(Duration::from_micros(500)),
            jitter: Dur(Duration::from_millis(1)),
            loss: 0.0,
            duplicate: 0.0,
        }
    }
}

/// `[guard]`: maps onto `core::GuardConfig` (the mode is chosen per run).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSpec {
    pub stable_after: Dur,
    pub window: Dur,
    pub min_removals: usize,
    pub max_removal_ratio: f64,
    pub max_freeze: Dur,
    pub release_after_max_freeze: bool,
    pub drain_per_sec: u32,
    pub warming_sync: Dur,
    pub warming_timeout: Dur,
    pub snapshot_max_age: Dur,
    /// Services that must fail closed (never served `held`).
    pub fail_closed: Vec<String>,
    /// Flap damping and gray-failure removal (both on by default; off to compare).
    pub damping: bool,
    pub gray: bool,
}

impl Default for GuardSpec {
    fn default() -> Self {
        let g = GuardConfig::default();
        GuardSpec {
            stable_after: Dur(g.stable_after),
            window: Dur(g.window),
            min_removals: g.min_removals,
            max_removal_ratio: g.max_removal_ratio,
            max_freeze: Dur(g.max_freeze),
            release_after_max_freeze: g.release_after_max_freeze,
            drain_per_sec: g.drain_per_sec,
            warming_sync: Dur(g.warming_sync),
            warming_timeout: Dur(g.warming_timeout),
            snapshot_max_age: Dur(g.snapshot_max_age),
            fail_closed: Vec::new(),
            damping: g.damping,
            gray: g.gray,
        }
    }
}

impl GuardSpec {
    pub fn config(&self, mode: GuardMode) -> GuardConfig {
        GuardConfig {
            mode,
            stable_after: self.stable_after.0,
            window: self.window.0,
            min_removals: self.min_removals,
            max_removal_ratio: self.max_removal_ratio,
            max_freeze: self.max_freeze.0,
            release_after_max_freeze: self.release_after_max_freeze,
            drain_per_sec: self.drain_per_sec,
            warming_sync: self.warming_sync.0,
            warming_timeout: self.warming_timeout.0,
            snapshot_max_age: self.snapshot_max_age.0,
            services: self
                .fail_closed
                .iter()
                .map(|name| (name.clone(), shoal_core::ServiceGuard { fail_closed: true }))
                .collect(),
            damping: self.damping,
            gray: self.gray,
            ..GuardConfig::default()
        }
    }
}

/// A service offered by some nodes (consumers everywhere look it up).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Number of providers, spread evenly over the initial nodes (ignored with `nodes`).
    #[serde(default)]
    pub providers: Option<usize>,
    /// Explicit provider indices.
    #[serde(default)]
    pub nodes: Option<Vec<usize>>,
    /// A health check on every provider (`[service.check]`): see `sim::health`.
    #[serde(default)]
    pub check: Option<CheckModel>,
    /// `config` (default): in each provider's config file. `api`: an app registers it through
    /// the local API once its provider has started (persisted in the data directory, as the
    /// agent does: a restart with `keep_data` announces it again, a fresh one has lost it).
    #[serde(default, skip_serializing_if = "Registered::is_config")]
    pub registered: Registered,
}

/// Where a service's registration comes from (`registered`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registered {
    #[default]
    Config,
    Api,
}

impl Registered {
    fn is_config(&self) -> bool {
        *self == Registered::Config
    }
}

fn default_port() -> u16 {
    8080
}

/// `[service.check]`: each provider runs a check every `interval`; its result is critical
/// while a `check-fail` fault covers the instance, passing otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckModel {
    pub interval: Dur,
    pub success_before_passing: u32,
    pub failures_before_critical: u32,
}

impl Default for CheckModel {
    fn default() -> Self {
        CheckModel {
            interval: Dur::secs(10),
            success_before_passing: 1,
            failures_before_critical: 1,
        }
    }
}

/// `[measure]`: what to record and how finely.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeasureSpec {
    /// Sampling period of the time series and of the no-provider check.
    pub sample_every: Dur,
    /// Measures of steady state (traffic, no-provider, false downs) count from here.
    pub from: Dur,
    /// How many nodes get a full served-view-size series (others are aggregated).
    pub series_nodes: usize,
    /// Nodes that always get a series (e.g. the isolated host).
    pub watch: Vec<usize>,
    /// At most this many initial joins are tracked node by node (all fault joins are).
    pub max_join_spreads: usize,
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            sample_every: Dur::secs(1),
            from: Dur::secs(30),
            series_nodes: 8,
            watch: Vec::new(),
            max_join_spreads: 200,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Two-way (or with `oneway`, from the first group to the others) partition.
    Partition,
    /// The selected nodes can neither send nor receive.
    Isolate,
    /// The selected nodes' NICs go off and on (`on`, `off` periods) for `duration`; with
    /// `direction = "ingress"` only what they receive is cut (they still send).
    Flap,
    /// The selected nodes crash; with `duration` they restart after it.
    Crash,
    /// Every selected node (default: all) in turn crashes for `down` and restarts, one
    /// every `every`.
    RollingRestart,
    /// Graceful leave.
    Leave,
    /// `count` new nodes join through the seeds.
    Join,
    /// Loss `rate` on the selected nodes (default: all) for `duration`: of what they send
    /// (`direction = "egress"`, the default), receive (`"ingress"`) or both (`"both"`, a
    /// half-working NIC: a gray failure).
    Loss,
    /// Each input takes `delay` to process on the selected nodes for `duration`.
    Slow,
    /// The selected nodes stop processing for `duration` (a full GC): inputs queue up.
    Pause,
    /// The checks of the chosen providers (`node`, `nodes`, `count`, `fraction` of the
    /// providers; default: all) of `service` (or of every checked service) are critical for
    /// `duration`: a shared dependency down.
    CheckFail,
    /// Bursty loss on the selected nodes (default: all) for `duration`: a Gilbert-Elliott
    /// chain per host (`good_loss`/`bad_loss`, mean sojourns `good_for`/`bad_for`) plus
    /// correlated storms (`storm_every`, `storm_fraction`); see `sim::bursty`.
    Bursty,
    /// The selected node (`node`, default 0) fires a user event (64 bytes of payload); the run
    /// reports its spread (`measure_events`).
    UserEvent,
    /// The selected node (`node`, default 0) asks the query `sim-query` (of the providers of
    /// `service` when given, else of every node) with its default timeout; every node has a
    /// handler that answers after 10 ms. The run reports what the origin's core counted
    /// (expected, acks, answers, cut off) and when they came (`measure_queries`).
    Query,
}

/// Which way a `loss` or `flap` fault acts on the selected hosts' traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Egress,
    Ingress,
    Both,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub at: Dur,
    pub kind: FaultKind,
    #[serde(default)]
    pub duration: Option<Dur>,
    #[serde(default)]
    pub label: Option<String>,
    // --- which nodes ---
    #[serde(default)]
    pub node: Option<usize>,
    #[serde(default)]
    pub nodes: Option<Vec<usize>>,
    /// A seeded random fraction of the running nodes (never node 0 unless `include_seeds`).
    #[serde(default)]
    pub fraction: Option<f64>,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub include_seeds: bool,
    /// Partition: explicit groups (nodes not listed form one more group).
    #[serde(default)]
    pub groups: Option<Vec<Vec<usize>>>,
    #[serde(default)]
    pub oneway: bool,
    // --- kind-specific ---
    #[serde(default)]
    pub on: Option<Dur>,
    #[serde(default)]
    pub off: Option<Dur>,
    /// Restart with the data directory (same name, known peers as seeds) or fresh.
    #[serde(default = "yes")]
    pub keep_data: bool,
    /// `crash` and `rolling-restart`: stop as on SIGTERM (the node announces a restart with
    /// `restart_grace`, default 60 s, and stops without leaving) instead of crashing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<Terminate>,
    #[serde(default)]
    pub every: Option<Dur>,
    #[serde(default)]
    pub down: Option<Dur>,
    #[serde(default)]
    pub rate: Option<f64>,
    /// `loss` (default egress) and `flap` (default both): which way it acts.
    #[serde(default)]
    pub direction: Option<Direction>,
    #[serde(default)]
    pub delay: Option<Dur>,
    /// `check-fail`: the service whose checks fail (default: every checked service).
    #[serde(default)]
    pub service: Option<String>,
    // --- bursty (Gilbert-Elliott) ---
    /// Loss in the good state (default 0).
    #[serde(default)]
    pub good_loss: Option<f64>,
    /// Loss in the bad state.
    #[serde(default)]
    pub bad_loss: Option<f64>,
    /// Mean time a host stays good between its own bursts (none: storms only).
    #[serde(default)]
    pub good_for: Option<Dur>,
    /// Mean time a host stays bad.
    #[serde(default)]
    pub bad_for: Option<Dur>,
    /// Mean gap between storms that put many hosts into the bad state at once.
    #[serde(default)]
    pub storm_every: Option<Dur>,
    /// Share of the selected hosts each storm hits.
    #[serde(default)]
    pub storm_fraction: Option<f64>,
}

fn yes() -> bool {
    true
}

/// `terminate = { restart_grace = "60s" }` on a `crash` or `rolling-restart` fault.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    #[serde(default = "default_grace")]
    pub restart_grace: Dur,
}

fn default_grace() -> Dur {
    Dur::secs(60)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    pub nodes: usize,
    #[serde(default)]
    pub profile: Profile,
    pub duration: Dur,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub guard: GuardSpec,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceSpec>,
    #[serde(default)]
    pub measure: MeasureSpec,
    #[serde(default, rename = "fault")]
    pub faults: Vec<FaultSpec>,
    #[serde(default)]
    pub lifeguard: LifeguardSpec,
}

/// `[lifeguard]`: overrides of the profile's Lifeguard timings (`core::lifeguard`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifeguardSpec {
    pub enabled: Option<bool>,
    pub lhm_max: Option<u8>,
    pub suspicion_max_mult: Option<f64>,
    pub suspicion_fast_confirmations: Option<usize>,
    pub suspicion_floor: Option<f64>,
}

impl LifeguardSpec {
    /// The profile's timings with these overrides.
    pub fn apply(&self, mut t: Timings) -> Timings {
        if let Some(v) = self.enabled {
            t.lifeguard = v;
        }
        if let Some(v) = self.lhm_max {
            t.lhm_max = v;
        }
        if let Some(v) = self.suspicion_max_mult {
            t.suspicion_max_mult = v;
        }
        if let Some(v) = self.suspicion_fast_confirmations {
            t.suspicion_fast_confirmations = v;
        }
        if let Some(v) = self.suspicion_floor {
            t.suspicion_floor = v;
        }
        t
    }
}

/// Largest cluster the simulator accepts (addresses are 10.x.y.z).
pub const MAX_NODES: usize = 1 << 20;

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Scenario::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let sc: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Toml(e.to_string()))?;
        sc.validate()?;
        Ok(sc)
    }

    /// Nodes that join through `join` faults after the start.
    pub fn extra_joins(&self) -> usize {
        self.faults
            .iter()
            .filter(|f| f.kind == FaultKind::Join)
            .map(|f| f.count.unwrap_or(1))
            .sum()
    }

    /// Every node the run may ever hold.
    pub fn total_nodes(&self) -> usize {
        self.nodes + self.extra_joins()
    }

    /// The providers a `check-fail` fault may choose from: those of its service, or of every
    /// checked service.
    pub fn check_providers(&self, f: &FaultSpec) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .services
            .iter()
            .zip(self.providers())
            .filter(|(s, _)| s.check.is_some())
            .filter(|(s, _)| f.service.as_ref().is_none_or(|n| *n == s.name))
            .flat_map(|(_, p)| p)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Provider node indices of each service.
    pub fn providers(&self) -> Vec<Vec<usize>> {
        self.services
            .iter()
            .enumerate()
            .map(|(si, s)| match &s.nodes {
                Some(ns) => ns.clone(),
                None => {
                    let k = s.providers.unwrap_or(3).clamp(1, self.nodes);
                    // Spread evenly, each service offset a little so that they differ.
                    let mut v: Vec<usize> = (0..k)
                        .map(|j| (j * self.nodes / k + si * 7 + 1) % self.nodes)
                        .collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                }
            })
            .collect()
    }

    /// The nodes fault `idx` hits, chosen with a RNG of its own (same in every mode).
    /// `eligible` are the candidates for a random choice.
    pub fn select(&self, idx: usize, eligible: &[usize]) -> Vec<usize> {
        let f = &self.faults[idx];
        let mut out: Vec<usize> = Vec::new();
        if let Some(n) = f.node {
            out.push(n);
        }
        if let Some(ns) = &f.nodes {
            out.extend(ns.iter().copied());
        }
        let k = match (f.count, f.fraction) {
            (Some(c), _) => Some(c),
            (None, Some(fr)) => Some(((eligible.len() as f64) * fr).round() as usize),
            _ => None,
        };
        if let Some(k) = k {
            let mut pool: Vec<usize> = eligible
                .iter()
                .copied()
                .filter(|n| {
                    f.include_seeds || *n >= self.cluster.seeds.min(self.nodes.saturating_sub(1))
                })
                .filter(|n| !out.contains(n))
                .collect();
            let mut rng = SmallRng::seed_from_u64(self.seed ^ (0xF00D_0000 + idx as u64));
            let k = k.min(pool.len());
            for j in 0..k {
                let pick = rng.random_range(j..pool.len());
                pool.swap(j, pick);
            }
            pool.truncate(k);
            pool.sort_unstable();
            out.extend(pool);
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[path = "scenario_validate.rs"]
mod validate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("30").unwrap_err().contains("not a duration"));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn scenario_parses_and_validates() {
        let sc = Scenario::parse(
            r#"
name = "t"
seed = 1
nodes = 10
duration = "60s"
[guard]
stable_after = "10s"
[[service]]
name = "web"
providers = 3
[[fault]]
at = "20s"
kind = "partition"
fraction = 0.4
duration = "10s"
"#,
        )
        .unwrap();
        assert_eq!(sc.guard.stable_after.0, Duration::from_secs(10));
        assert_eq!(sc.providers()[0].len(), 3);
        let all: Vec<usize> = (0..10).collect();
        let a = sc.select(0, &all);
        assert_eq!(a.len(), 4);
        assert_eq!(a, sc.select(0, &all));
        let err = Scenario::parse("name='x'\nseed=1\nnodes=3\nduration='1s'\n[[fault]]\nat='1s'\nkind='flap'\nduration='1s'\n")
            .unwrap_err();
        assert!(err.to_string().contains("on"), "{err}");
    }
}
