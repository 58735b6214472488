//! The self-contained HTML report of a scenario: both guard modes side by side.
//!
//! Owns the page layout: the scenario and its faults, a summary table (one column per mode),
//! served view size over time with the fault timeline shaded, guard states, no-provider
//! nodes, detection latency CDFs and bandwidth per node. Inline SVG only (no script, no
//! external asset). Also the growth page of a `--sizes` sweep (spreads, load, memory and
//! speed against N on a log axis). Must not compute measures: it renders `RunResult`s and
//! `Growth`.

use crate::growth::{Growth, GrowthPoint};
use crate::measure::{IntervalStats, Quantiles, RunResult, SpreadStats};
use crate::scenario::Scenario;
use crate::svg::{esc, render, Line, Plot, Shade, PALETTE};
use std::fmt::Write;

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into())
}

fn spread_cell(s: &SpreadStats) -> String {
    if s.count == 0 {
        return "—".into();
    }
    if s.complete == 0 {
        return format!(
            "0 of {} reached every live node (median 50%: {})",
            s.count,
            if s.t50_s.p50 > 0.0 {
                format!("{:.2} s", s.t50_s.p50)
            } else {
                "never".into()
            }
        );
    }
    format!(
        "{} of {} complete; median over events: 50% {:.2} s, 99% {:.2} s, 100% {:.2} s (worst 100%: {:.2} s)",
        s.complete, s.count, s.t50_s.p50, s.t99_s.p50, s.t100_s.p50, s.t100_s.max
    )
}

fn iv(s: &IntervalStats) -> String {
    format!(
        "{} ({:.1} s total, median {:.2} s, max {:.1} s)",
        s.count, s.total_s, s.p50_s, s.max_s
    )
}

fn q(v: &Quantiles, unit: &str) -> String {
    format!(
        "median {:.0}{unit}, p99 {:.0}{unit}, max {:.0}{unit}",
        v.p50, v.p99, v.max
    )
}

fn shades(r: &RunResult) -> Vec<Shade> {
    r.faults
        .iter()
        .map(|f| Shade {
            x0: f.start_s,
            x1: f.end_s,
            label: format!("{} ({} nodes)", f.label, f.nodes),
        })
        .collect()
}

fn view_plot(r: &RunResult) -> String {
    let s = &r.series;
    let mut p = Plot::new(
        &format!("Served view size — guard {:?}", r.mode).to_lowercase(),
        "virtual time (s)",
        "members served (alive/suspect/held)",
    );
    p.shades = shades(r);
    p.lines.push(
        Line::new(
            "live nodes (truth)",
            "#000",
            s.t_s
                .iter()
                .zip(&s.live)
                .map(|(t, v)| (*t, f64::from(*v)))
                .collect(),
        )
        .dashed(),
    );
    p.lines.push(
        Line::new(
            "min over nodes",
            "#999",
            s.t_s
                .iter()
                .zip(&s.view_min)
                .map(|(t, v)| (*t, f64::from(*v)))
                .collect(),
        )
        .dashed(),
    );
    for (k, ns) in s.nodes.iter().enumerate() {
        let pts = s
            .t_s
            .iter()
            .zip(&ns.size)
            .map(|(t, v)| (*t, v.map(f64::from).unwrap_or(f64::NAN)))
            .collect();
        p.lines.push(Line::new(
            format!("n{} ({})", ns.node, ns.role),
            PALETTE[k % PALETTE.len()],
            pts,
        ));
    }
    render(&p)
}

fn guard_plot(r: &RunResult) -> String {
    let s = &r.series;
    let mut p = Plot::new(
        &format!("Guard and false downs — guard {:?}", r.mode).to_lowercase(),
        "virtual time (s)",
        "count",
    );
    p.shades = shades(r);
    let series: [(&str, &Vec<u32>); 6] = [
        ("nodes frozen", &s.guard_frozen),
        ("nodes isolated", &s.guard_isolated),
        ("(observer, live node) served down", &s.served_down_pairs),
        ("(observer, live node) held", &s.held_pairs),
        ("(observer, crashed node) still served", &s.stale_pairs),
        ("nodes with a service empty", &s.no_provider_nodes),
    ];
    for (k, (name, v)) in series.iter().enumerate() {
        p.lines.push(Line::new(
            *name,
            PALETTE[k],
            s.t_s
                .iter()
                .zip(v.iter())
                .map(|(t, v)| (*t, f64::from(*v)))
                .collect(),
        ));
    }
    render(&p)
}

fn cdf_plot(runs: &[RunResult]) -> String {
    let mut p = Plot::new(
        "Detection / propagation latency CDF (per observer)",
        "seconds after the event",
        "fraction of observers",
    );
    let mut k = 0;
    for r in runs {
        let mode = format!("{:?}", r.mode).to_lowercase();
        for (what, st) in [
            ("crash seen down", &r.spreads.crash),
            ("join seen", &r.spreads.join),
            ("leave seen", &r.spreads.leave),
        ] {
            if st.cdf_s.is_empty() {
                continue;
            }
            let n = st.cdf_s.len() as f64 - 1.0;
            let pts = st
                .cdf_s
                .iter()
                .enumerate()
                .map(|(i, x)| (*x, i as f64 / n))
                .collect();
            let mut l = Line::new(format!("{what} ({mode})"), PALETTE[k % PALETTE.len()], pts);
            if k % 2 == 1 {
                l = l.dashed();
            }
            p.lines.push(l);
            k += 1;
        }
    }
    render(&p)
}

fn bandwidth_plot(runs: &[RunResult]) -> String {
    let mut p = Plot::new(
        "Bandwidth per node (sent, measure window)",
        "nodes, sorted (percentile)",
        "bytes/s",
    );
    for (k, r) in runs.iter().enumerate() {
        let v = &r.traffic.tx_bytes_per_s_sorted;
        let n = (v.len().max(2) - 1) as f64;
        let pts = v
            .iter()
            .enumerate()
            .map(|(i, b)| (100.0 * i as f64 / n, *b))
            .collect();
        p.lines.push(Line::new(
            format!("guard {:?}", r.mode).to_lowercase(),
            PALETTE[k],
            pts,
        ));
    }
    render(&p)
}

fn traffic_plot(runs: &[RunResult]) -> String {
    let mut p = Plot::new(
        "Cluster traffic over time",
        "virtual time (s)",
        "bytes/s sent (all nodes)",
    );
    if let Some(r) = runs.first() {
        p.shades = shades(r);
    }
    for (k, r) in runs.iter().enumerate() {
        let s = &r.series;
        p.lines.push(Line::new(
            format!("guard {:?}", r.mode).to_lowercase(),
            PALETTE[k],
            s.t_s
                .iter()
                .zip(&s.tx_bytes_per_s)
                .map(|(t, v)| (*t, *v))
                .collect(),
        ));
    }
    render(&p)
}

/// Starts a self-contained report page: its title and the style every report page shares
/// (`width`: the page's largest width in px; `extra`: more CSS rules; `columns`: of `.grid`).
pub(crate) fn page_head(h: &mut String, title: &str, width: u32, extra: &str, columns: usize) {
    let _ = write!(
        h,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:sans-serif;margin:20px;color:#222;max-width:{width}px}}
table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;vertical-align:top}}
th{{background:#f3f3f3;text-align:left}} {extra}.grid{{display:grid;grid-template-columns:repeat({columns},1fr);gap:8px}}
h2{{margin-top:28px;border-bottom:1px solid #ddd}} .note{{color:#666;font-size:12px}}
</style></head><body>"#,
        esc(title),
    );
}

/// Renders the page for one scenario and its runs (typically `enforce` and `off`).
pub fn html(sc: &Scenario, runs: &[RunResult]) -> String {
    let mut h = String::new();
    let title = format!("shoal simulation: {}", sc.name);
    page_head(&mut h, &title, 1250, "", runs.len().clamp(1, 2));
    let _ = write!(h, "<h1>{}</h1><p>{}</p>", esc(&title), esc(&sc.description));
    let _ = write!(
        h,
        "<p class=note>seed {} · {} nodes (+{} joining) · profile {} · {} virtual · measures from {} · network latency {} + jitter {} · loss {} · duplicate {}</p>",
        sc.seed,
        sc.nodes,
        sc.extra_joins(),
        sc.profile,
        sc.duration,
        sc.measure.from,
        sc.network.latency,
        sc.network.jitter,
        sc.network.loss,
        sc.network.duplicate
    );
    let g = &sc.guard;
    let _ = write!(
        h,
        "<p class=note>guard: stable_after {} · window {} · min_removals {} · max_removal_ratio {} · max_freeze {} · release_after_max_freeze {} · drain_per_sec {}</p>",
        g.stable_after, g.window, g.min_removals, g.max_removal_ratio, g.max_freeze, g.release_after_max_freeze, g.drain_per_sec
    );
    if let Some(r) = runs.first() {
        h.push_str("<table><tr><th>fault</th><th>from (s)</th><th>to (s)</th><th>nodes</th></tr>");
        for f in &r.faults {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td></tr>",
                esc(&f.label),
                f.start_s,
                f.end_s,
                f.nodes
            );
        }
        h.push_str("</table>");
    }

    // Summary table.
    h.push_str("<h2>Summary</h2><table><tr><th>measure</th>");
    for r in runs {
        let _ = write!(
            h,
            "<th>guard {}</th>",
            format!("{:?}", r.mode).to_lowercase()
        );
    }
    h.push_str("</tr>");
    type Row = (&'static str, fn(&RunResult) -> String);
    let rows: Vec<Row> = vec![
        ("join reaches 50/99/100% of nodes", |r| {
            spread_cell(&r.spreads.join)
        }),
        ("crash detected by 50/99/100% (SWIM down)", |r| {
            spread_cell(&r.spreads.crash)
        }),
        ("leave seen as left by 50/99/100%", |r| {
            spread_cell(&r.spreads.leave)
        }),
        (
            "initial cluster: full view at 50/99/100% of nodes (s)",
            |r| {
                format!(
                    "{} / {} / {} ({} of {} nodes; {} s after the last start; {} distinct cluster sizes seen)",
                    opt(r.full_view.t50_s),
                    opt(r.full_view.t99_s),
                    opt(r.full_view.t100_s),
                    r.full_view.nodes,
                    r.full_view.of,
                    opt(r.full_view.after_last_start_s),
                    r.full_view.distinct_sizes
                )
            },
        ),
        (
            "false downs: live node declared down (count, observer-s)",
            |r| iv(&r.false_downs.declared),
        ),
        ("… served to apps as down", |r| iv(&r.false_downs.served)),
        ("… served as held by the guard", |r| {
            iv(&r.false_downs.held)
        }),
        ("live nodes declared down at least once", |r| {
            r.false_downs.victims.to_string()
        }),
        (
            "cut-off side: live members served down (observer-s), lowest share served",
            |r| side_cell(r, true),
        ),
        (
            "the rest: live members served down (observer-s), lowest share served",
            |r| side_cell(r, false),
        ),
        (
            "exact truth everywhere after the last heal (s)",
            |r| match &r.sides {
                Some(s) => opt(s.exact_truth_after_heal_s),
                None => "—".into(),
            },
        ),
        (
            "stale: crashed node served alive/suspect (observer-s)",
            |r| iv(&r.stale.served_alive),
        ),
        ("stale: crashed node served held (observer-s)", |r| {
            iv(&r.stale.held)
        }),
        ("no-provider node-seconds (all services)", |r| {
            format!(
                "{:.0} (per node: median {:.0} s, max {:.0} s)",
                r.no_provider.total_s, r.no_provider.per_node_s.p50, r.no_provider.per_node_s.max
            )
        }),
        (
            "no-passing-provider node-seconds (checked services)",
            |r| match &r.health {
                Some(h) => format!(
                    "{:.0} ({})",
                    h.no_passing_s,
                    h.services
                        .iter()
                        .map(|s| format!(
                            "{} {:.0} s on {} nodes",
                            s.name, s.no_passing_s, s.nodes_affected
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "-".into(),
            },
        ),
        ("per-node sent bytes/s", |r| {
            q(&r.traffic.tx_bytes_per_s, " B/s")
        }),
        ("per-node sent datagrams/s", |r| {
            format!(
                "median {:.1}, p99 {:.1}, max {:.1}",
                r.traffic.tx_msgs_per_s.p50,
                r.traffic.tx_msgs_per_s.p99,
                r.traffic.tx_msgs_per_s.max
            )
        }),
        (
            "datagrams: sent / lost / partitioned / cut / duplicated",
            |r| {
                let t = &r.traffic;
                format!(
                    "{} / {} / {} / {} / {}",
                    t.datagrams, t.lost, t.partitioned, t.cut, t.duplicated
                )
            },
        ),
        ("guard transitions (nodes that tripped)", |r| {
            let kinds: Vec<String> = r
                .guard
                .by_kind
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            format!(
                "{} ({}) {}",
                r.guard.transitions,
                r.guard.nodes_tripped,
                kinds.join(", ")
            )
        }),
        ("simulator: events, wall s, virtual s per wall s", |r| {
            format!(
                "{} events, {:.1} s, {:.1}",
                r.perf.events, r.perf.wall_s, r.perf.virtual_s_per_wall_s
            )
        }),
    ];
    for (name, f) in rows {
        let _ = write!(h, "<tr><th>{}</th>", esc(name));
        for r in runs {
            let _ = write!(h, "<td>{}</td>", esc(&f(r)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");

    h.push_str("<h2>Served view size over time</h2><p class=note>Shaded: fault windows. Dashed black: nodes actually running. Each coloured line is one node's served view.</p><div class=grid>");
    for r in runs {
        let _ = write!(h, "<div>{}</div>", view_plot(r));
    }
    h.push_str(
        "</div><h2>Guard, false downs, stale and empty services over time</h2><div class=grid>",
    );
    for r in runs {
        let _ = write!(h, "<div>{}</div>", guard_plot(r));
    }
    h.push_str("</div><h2>Detection latency and bandwidth</h2><div class=grid>");
    let _ = write!(h, "<div>{}</div>", cdf_plot(runs));
    let _ = write!(h, "<div>{}</div>", bandwidth_plot(runs));
    let _ = write!(h, "<div>{}</div>", traffic_plot(runs));
    h.push_str("</div>");

    h.push_str("<h2>Services</h2><table><tr><th>service</th><th>providers</th>");
    for r in runs {
        let _ = write!(
            h,
            "<th>no-provider node-s, nodes affected ({})</th>",
            format!("{:?}", r.mode).to_lowercase()
        );
    }
    h.push_str("</tr>");
    if let Some(first) = runs.first() {
        for (k, s) in first.no_provider.services.iter().enumerate() {
            let provs: Vec<String> = s.providers.iter().map(|p| format!("n{p}")).collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td>",
                esc(&s.name),
                provs.join(" ")
            );
            for r in runs {
                if let Some(x) = r.no_provider.services.get(k) {
                    let _ = write!(h, "<td>{:.0} s, {}</td>", x.no_provider_s, x.nodes_affected);
                }
            }
            h.push_str("</tr>");
        }
    }
    h.push_str("</table>");

    h.push_str("<h2>Guard transitions (first ones)</h2><div class=grid>");
    for r in runs {
        h.push_str("<div><table><tr><th>t (s)</th><th>node</th><th>change</th><th>held</th><th>reason</th></tr>");
        for c in r.guard.first.iter().take(25) {
            let _ = write!(
                h,
                "<tr><td>{:.1}</td><td>n{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
                c.at_s,
                c.node,
                c.from.as_str(),
                c.to.as_str(),
                c.held,
                esc(&c.reason)
            );
        }
        if r.guard.first.is_empty() {
            h.push_str("<tr><td colspan=5>none</td></tr>");
        }
        h.push_str("</table></div>");
    }
    h.push_str("</div><p class=note>Generated by shoal-sim. Same seed, same result: rerun with the seed above to reproduce.</p></body></html>\n");
    h
}

/// One side of a cut: observer-seconds of live members served down, and the lowest share of
/// the live peers a node of that side served.
fn side_cell(r: &RunResult, cut_off: bool) -> String {
    let Some(s) = &r.sides else {
        return "—".into();
    };
    let side = if cut_off { &s.cut_off } else { &s.rest };
    format!(
        "{:.0} ({} nodes; lowest {:.0} %)",
        side.live_served_down_s,
        side.nodes,
        side.min_served_fraction * 100.0
    )
}

#[path = "report_growth.rs"]
mod growth_page;
pub use growth_page::{growth_html, growth_table};
