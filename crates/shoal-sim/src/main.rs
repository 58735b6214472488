//! `shoal-sim`: runs simulation scenarios and writes a JSON result and an HTML report.
//!
//! The CLI edge of `shoal_sim`: argument parsing, overrides (seed, nodes, mode), running
//! the guard modes (in parallel threads for small clusters), the progress bar on stderr and
//! the output files. Must not compute anything the library does.

#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use shoal_core::GuardMode;
use shoal_sim::{self as sim, Progress, RunResult, Scenario};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Enforce,
    Off,
    Shadow,
    Both,
}

/// Deterministic simulation of a shoal cluster under faults.
#[derive(Parser, Debug)]
#[command(name = "shoal-sim", version)]
struct Args {
    /// Scenario files (simulations/*.toml).
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Output directory for <name>.json and <name>.html.
    #[arg(long, default_value = "report")]
    out: PathBuf,
    /// Override the scenario's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the scenario's node count.
    #[arg(long)]
    nodes: Option<usize>,
    /// Override the virtual duration (e.g. "120s").
    #[arg(long)]
    duration: Option<String>,
    /// Guard modes to run: both = enforce and off side by side.
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// Lifeguard (local health, dynamic suspicion) on or off, overriding the scenario's
    /// `[lifeguard] enabled` (default: the profile's, on): measures before and after in one build.
    #[arg(long, value_enum)]
    lifeguard: Option<OnOff>,
    /// Run the modes one after the other (halves peak memory on large clusters).
    #[arg(long)]
    sequential: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Run each scenario at these sizes (e.g. "100,1000,10000"), same seed, overriding
    /// `nodes`; writes growth.json and growth.html (<name>-growth.* with several scenarios).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

struct Bar {
    tty: bool,
    quiet: bool,
    state: Mutex<Vec<(String, f64, f64)>>,
    last_pct: Mutex<u64>,
    /// Without a terminal: when the last line was printed (a line every 10 % or 30 s).
    last_line: Mutex<Option<std::time::Instant>>,
}

impl Bar {
    fn update(&self, slot: usize, p: &Progress) {
        if self.quiet {
            return;
        }
        let frac = if p.total_ms > 0 {
            p.virtual_ms as f64 / p.total_ms as f64
        } else {
            1.0
        };
        let speed = if p.wall_s > 0.0 {
            p.virtual_ms as f64 / 1000.0 / p.wall_s
        } else {
            0.0
        };
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = st.get_mut(slot) {
            s.1 = frac;
            s.2 = speed;
        }
        let min = st.iter().map(|s| s.1).fold(1.0, f64::min);
        let line: Vec<String> = st
            .iter()
            .map(|(name, f, sp)| {
                let w = 24;
                let filled = ((f * w as f64) as usize).min(w);
                format!(
                    "{name} [{}{}] {:>3.0}% {:.1} vs/s",
                    "#".repeat(filled),
                    ".".repeat(w - filled),
                    f * 100.0,
                    sp
                )
            })
            .collect();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{}  live {} ", line.join("  "), p.live);
            let _ = err.flush();
        } else {
            let pct = (min * 10.0) as u64;
            let mut last = self.last_pct.lock().unwrap_or_else(|e| e.into_inner());
            let mut at = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
            let stale = at.map(|t| t.elapsed().as_secs() >= 30).unwrap_or(true);
            if pct > *last || stale {
                *last = (*last).max(pct);
                *at = Some(std::time::Instant::now());
                let _ = writeln!(
                    err,
                    "{}  ({:.1} of {:.0} virtual s)",
                    line.join("  "),
                    p.virtual_ms as f64 / 1000.0,
                    p.total_ms as f64 / 1000.0
                );
            }
        }
    }

    fn done(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    for path in &args.scenarios {
        let mut sc = Scenario::load(path)?;
        if let Some(s) = args.seed {
            sc.seed = s;
        }
        if let Some(n) = args.nodes {
            sc.nodes = n;
        }
        if let Some(d) = &args.duration {
            sc.duration = sim::scenario::Dur(
                sim::scenario::parse_duration(d).map_err(|e| anyhow::anyhow!("--duration: {e}"))?,
            );
        }
        if let Some(l) = args.lifeguard {
            sc.lifeguard.enabled = Some(matches!(l, OnOff::On));
        }
        sc.validate().context("scenario after overrides")?;
        let modes: Vec<GuardMode> = match args.mode {
            ModeArg::Enforce => vec![GuardMode::Enforce],
            ModeArg::Off => vec![GuardMode::Off],
            ModeArg::Shadow => vec![GuardMode::Shadow],
            ModeArg::Both => vec![GuardMode::Enforce, GuardMode::Off],
        };
        if !args.sizes.is_empty() {
            let stem = if args.scenarios.len() > 1 {
                format!("{}-growth", sanitize(&sc.name))
            } else {
                "growth".to_string()
            };
            growth(&args, &sc, &modes, &stem)?;
            continue;
        }
        eprintln!(
            "{}: {} nodes, {} virtual, seed {}, modes {:?}",
            sc.name, sc.nodes, sc.duration, sc.seed, modes
        );
        let parallel = !args.sequential && modes.len() > 1 && sc.total_nodes() <= 3000;
        warn_memory(sc.total_nodes(), if parallel { modes.len() } else { 1 });
        let bar = Bar {
            tty: std::io::stderr().is_terminal(),
            quiet: args.quiet,
            state: Mutex::new(
                modes
                    .iter()
                    .map(|m| (format!("{m:?}").to_lowercase(), 0.0, 0.0))
                    .collect(),
            ),
            last_pct: Mutex::new(0),
            last_line: Mutex::new(None),
        };
        let started = Instant::now();
        let results: Vec<Result<RunResult, sim::SimError>> = if parallel {
            std::thread::scope(|s| {
                let handles: Vec<_> = modes
                    .iter()
                    .enumerate()
                    .map(|(k, m)| {
                        let sc = &sc;
                        let bar = &bar;
                        s.spawn(move || sim::run(sc, *m, &mut |p| bar.update(k, p)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        } else {
            modes
                .iter()
                .enumerate()
                .map(|(k, m)| sim::run(&sc, *m, &mut |p| bar.update(k, p)))
                .collect()
        };
        bar.done();
        let runs: Vec<RunResult> = results.into_iter().collect::<Result<_, _>>()?;
        let stem = sanitize(&sc.name);
        let json = serde_json::json!({ "scenario": &sc, "runs": &runs });
        let (json_path, html_path) =
            write_report(&args.out, &stem, &json, &sim::report::html(&sc, &runs))?;
        for r in &runs {
            eprintln!(
                "  {:<8} crash seen by 100%: {} s · join 100%: {} s · false downs served {} ({:.0} s) held {} · stale {:.0} s · no-provider {:.0} node-s · {:.0} B/s/node · {:.1} vs/s",
                format!("{:?}", r.mode).to_lowercase(),
                fmt_opt(r.spreads.crash.t100_s.p50, r.spreads.crash.complete),
                fmt_opt(r.spreads.join.t100_s.p50, r.spreads.join.complete),
                r.false_downs.served.count,
                r.false_downs.served.total_s,
                r.false_downs.held.count,
                r.stale.total_s,
                r.no_provider.total_s,
                r.traffic.tx_bytes_per_s.p50,
                r.perf.virtual_s_per_wall_s,
            );
            if r.full_view.of > 0 {
                eprintln!(
                    "  {:<8} one complete view everywhere at {} s ({} s after the last start; {} of {} nodes) · {} distinct cluster sizes seen · fewest served after a full view: {} · exact truth after the last heal or restart: {} s",
                    format!("{:?}", r.mode).to_lowercase(),
                    r.full_view.t100_s.map_or("—".into(), |t| format!("{t:.2}")),
                    r.full_view
                        .after_last_start_s
                        .map_or("—".into(), |t| format!("{t:.2}")),
                    r.full_view.nodes,
                    r.full_view.of,
                    r.full_view.distinct_sizes,
                    r.full_view
                        .min_served_after_full
                        .map_or("never fewer".into(), |m| m.to_string()),
                    r.full_view
                        .exact_after_last_heal_s
                        .map_or("—".into(), |t| format!("{t:.2}")),
                );
            }
            if let Some(h) = &r.health {
                eprintln!(
                    "  {:<8} no-passing-provider {:.0} node-s ({}) · {} health changes published",
                    format!("{:?}", r.mode).to_lowercase(),
                    h.no_passing_s,
                    h.services
                        .iter()
                        .map(|s| format!("{} {:.0}", s.name, s.no_passing_s))
                        .collect::<Vec<_>>()
                        .join(", "),
                    h.published
                );
            }
        }
        eprintln!(
            "  wrote {} and {} in {:.1} s",
            json_path.display(),
            html_path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Measured: every node holds every other, about 135 bytes per (node, member) pair (a
/// formed 10,000 passed 12.9 GB before every node held the list, 9 Dec; 210 before the
/// truth's entries shrank, docs/results/2026-12-09-scale.md).
const BYTES_PER_PAIR: f64 = 135.0;

/// Warns before a run whose full membership likely needs more memory than is available.
fn warn_memory(nodes: usize, concurrent: usize) {
    let need = (nodes as f64).powi(2) * BYTES_PER_PAIR * concurrent as f64;
    let Some(avail) = mem_available() else {
        return;
    };
    if need > avail as f64 * 0.8 {
        eprintln!(
            "warning: {nodes} nodes need about {:.1} GB once everyone knows everyone ({BYTES_PER_PAIR} B per node and member{}); {:.1} GB is available",
            need / 1e9,
            if concurrent > 1 { ", modes run side by side: try --sequential" } else { "" },
            avail as f64 / 1e9
        );
    }
}

/// `MemAvailable` from /proc/meminfo, in bytes (Linux only).
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `--sizes`: the scenario at each size, one after the other (smallest first), then the
/// growth table, growth.json and growth.html.
fn growth(args: &Args, sc: &Scenario, modes: &[GuardMode], stem: &str) -> Result<()> {
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if let Some(n) = sizes.last() {
        warn_memory(*n, 1);
    }
    eprintln!(
        "{}: sizes {:?}, {} virtual each, seed {}, modes {:?}",
        sc.name, sizes, sc.duration, sc.seed, modes
    );
    // One bar line per run: the runs go one after the other.
    let bar = Bar {
        tty: std::io::stderr().is_terminal(),
        quiet: args.quiet,
        state: Mutex::new(vec![(String::new(), 0.0, 0.0)]),
        last_pct: Mutex::new(0),
        last_line: Mutex::new(None),
    };
    let mut current: Option<(usize, GuardMode)> = None;
    let started = Instant::now();
    let (g, runs) = sim::growth::run_sizes(sc, &sizes, modes, &mut |n, m, p| {
        if current != Some((n, m)) {
            if current.is_some() {
                bar.done();
            }
            current = Some((n, m));
            let mut st = bar.state.lock().unwrap_or_else(|e| e.into_inner());
            st[0] = (
                format!("{n} nodes {}", format!("{m:?}").to_lowercase()),
                0.0,
                0.0,
            );
            *bar.last_pct.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        }
        bar.update(0, p);
    })?;
    bar.done();
    let json = serde_json::json!({ "scenario": sc, "growth": &g, "runs": &runs });
    let (json_path, html_path) =
        write_report(&args.out, stem, &json, &sim::report::growth_html(sc, &g))?;
    print!("{}", sim::report::growth_table(&g));
    // Beside it, the mean-field model fitted to these sizes, with its error at each and its
    // figures beyond them (docs/formation.md).
    for mode in modes {
        let pts: Vec<&sim::growth::GrowthPoint> =
            g.points.iter().filter(|p| p.mode == *mode).collect();
        if let Some(m) = sim::model::Model::calibrate(&pts, &sc.profile.timings()) {
            let beyond: Vec<usize> = [10_000, 100_000]
                .into_iter()
                .filter(|n| !g.sizes.contains(n))
                .collect();
            print!("{}", m.table(&beyond));
        }
    }
    eprintln!(
        "  wrote {} and {} in {:.1} s",
        json_path.display(),
        html_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes `OUT/STEM.json` and `OUT/STEM.html`; returns their paths.
fn write_report(
    out: &std::path::Path,
    stem: &str,
    json: &serde_json::Value,
    html: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let json_path = out.join(format!("{stem}.json"));
    let html_path = out.join(format!("{stem}.html"));
    std::fs::write(&json_path, serde_json::to_vec_pretty(json)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&html_path, html)
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    Ok((json_path, html_path))
}

fn fmt_opt(v: f64, count: u32) -> String {
    if count == 0 {
        "—".into()
    } else {
        format!("{v:.2}")
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
