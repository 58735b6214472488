//! The growth page of a `--sizes` sweep: spreads, load, memory and speed against N on a log
//! axis, and the plain-text table `shoal-sim --sizes` prints.
//!
//! A child module of `report` (it shares its cell and plot helpers). Must not compute
//! measures: it renders `Growth`.

use super::*;

fn mode_name(m: shoal_core::GuardMode) -> String {
    format!("{m:?}").to_lowercase()
}

/// One line per mode of `get` against N (log axis), with markers.
fn growth_lines(
    g: &Growth,
    name: &str,
    color: &str,
    dashed: bool,
    get: fn(&GrowthPoint) -> Option<f64>,
) -> Vec<Line> {
    let mut modes: Vec<shoal_core::GuardMode> = Vec::new();
    for p in &g.points {
        if !modes.contains(&p.mode) {
            modes.push(p.mode);
        }
    }
    let multi = modes.len() > 1;
    modes
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let pts = g
                .points
                .iter()
                .filter(|p| p.mode == *m)
                .map(|p| (p.nodes as f64, get(p).unwrap_or(f64::NAN)))
                .collect();
            let label = if multi {
                format!("{name} ({})", mode_name(*m))
            } else {
                name.to_string()
            };
            let mut l = Line::new(label, color, pts).markers();
            if dashed || k > 0 {
                l = l.dashed();
            }
            l
        })
        .collect()
}

/// One plotted measure of a growth page: (legend, dashed, getter).
type GrowthSeries = (&'static str, bool, fn(&GrowthPoint) -> Option<f64>);

fn growth_plot(g: &Growth, title: &str, y: &str, series: &[GrowthSeries]) -> String {
    let mut p = Plot::new(title, "cluster size N (log scale)", y);
    p.x_log = true;
    p.width = 420.0;
    for (k, (name, dashed, get)) in series.iter().enumerate() {
        p.lines.extend(growth_lines(
            g,
            name,
            PALETTE[k % PALETTE.len()],
            *dashed,
            *get,
        ));
    }
    render(&p)
}

fn o2(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into())
}

/// The growth table as plain text (what `shoal-sim --sizes` prints).
pub fn growth_table(g: &Growth) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>7} {:<7} {:>6} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8}",
        "nodes", "mode", "join50", "join99", "join100", "fullvw+", "crsh50", "crsh99", "crsh100", "left100",
        "msg/s", "txB/s", "rxB/s", "fdowns", "vs/ws", "peakMiB"
    );
    for p in &g.points {
        let _ = writeln!(
            s,
            "{:>7} {:<7} {:>6} {:>6} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7.1} {:>8.0} {:>8.0} {:>7} {:>8.2} {:>8}",
            p.nodes,
            mode_name(p.mode),
            o2(p.join.t50_s),
            o2(p.join.t99_s),
            o2(p.join.t100_s),
            o2(p.full_view.after_last_start_s),
            o2(p.crash.t50_s),
            o2(p.crash.t99_s),
            o2(p.crash.t100_s),
            o2(p.leave.t100_s),
            p.tx_msgs_per_s.p50,
            p.tx_bytes_per_s.p50,
            p.rx_bytes_per_s.p50,
            p.false_downs_declared,
            p.perf.virtual_s_per_wall_s,
            p.perf
                .peak_rss_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "—".into()),
        );
    }
    for f in &g.fits {
        let _ = writeln!(
            s,
            "fit {:<26} ({}): {:.2} s + {:.3} s per doubling of N (r² {:.3}, {} sizes)",
            f.measure,
            mode_name(f.mode),
            f.a_s,
            f.per_doubling_s,
            f.r2,
            f.points
        );
    }
    s
}

/// The self-contained growth page: spread times, load, memory and speed against N.
pub fn growth_html(sc: &Scenario, g: &Growth) -> String {
    let mut h = String::new();
    let title = format!("shoal simulation growth: {}", g.scenario);
    crate::report::page_head(&mut h, &title, 1350, "td{text-align:right} ", 3);
    let _ = write!(h, "<h1>{}</h1><p>{}</p>", esc(&title), esc(&g.description));
    let sizes: Vec<String> = g.sizes.iter().map(|n| n.to_string()).collect();
    let _ = write!(
        h,
        "<p class=note>seed {} · sizes {} · profile {} · {} virtual per size · measures from {} · seeds {} · start spread {} · network latency {} + jitter {} · loss {}. Each size is the same scenario with only <code>nodes</code> changed. Spread times are medians over the events of that kind; \"full view\" is when the last node of the initial cluster first served all of it, plotted from the start of the last initial node.</p>",
        g.seed,
        sizes.join(", "),
        sc.profile,
        sc.duration,
        sc.measure.from,
        sc.cluster.seeds,
        sc.cluster.start_spread,
        sc.network.latency,
        sc.network.jitter,
        sc.network.loss,
    );
    h.push_str("<h2>Spread and detection against cluster size</h2><p class=note>x axis: N on a log scale, so growth like log N is a straight line; growth like N would curve up steeply.</p><div class=grid>");
    type S = GrowthSeries;
    let join: [S; 4] = [
        ("join 50%", false, |p| p.join.t50_s),
        ("join 99%", false, |p| p.join.t99_s),
        ("join 100%", false, |p| p.join.t100_s),
        ("full view, after the last start", true, |p| {
            p.full_view.after_last_start_s
        }),
    ];
    h.push_str(&growth_plot(
        g,
        "Join seen by 50/99/100% of nodes",
        "seconds",
        &join,
    ));
    let crash: [S; 3] = [
        ("crash 50%", false, |p| p.crash.t50_s),
        ("crash 99%", false, |p| p.crash.t99_s),
        ("crash 100%", false, |p| p.crash.t100_s),
    ];
    if g.points.iter().any(|p| p.crash.count > 0) {
        h.push_str(&growth_plot(
            g,
            "Crash detected (down) by 50/99/100%",
            "seconds",
            &crash,
        ));
    }
    let leave: [S; 3] = [
        ("leave 50%", false, |p| p.leave.t50_s),
        ("leave 99%", false, |p| p.leave.t99_s),
        ("leave 100%", false, |p| p.leave.t100_s),
    ];
    if g.points.iter().any(|p| p.leave.count > 0) {
        h.push_str(&growth_plot(
            g,
            "Graceful leave seen by 50/99/100%",
            "seconds",
            &leave,
        ));
    }
    h.push_str("</div><h2>Per-node load, memory and simulator speed</h2><p class=note>Per-node load should stay flat as N grows. Memory and speed are the simulator's own (whole process, all nodes), measured on this machine.</p><div class=grid>");
    let msgs: [S; 2] = [
        ("tx msgs/s per node (median)", false, |p| {
            Some(p.tx_msgs_per_s.p50)
        }),
        ("tx msgs/s per node (p99)", true, |p| {
            Some(p.tx_msgs_per_s.p99)
        }),
    ];
    h.push_str(&growth_plot(
        g,
        "Messages per node per second",
        "msgs/s",
        &msgs,
    ));
    let bytes: [S; 3] = [
        ("tx B/s per node (median)", false, |p| {
            Some(p.tx_bytes_per_s.p50)
        }),
        ("tx B/s per node (p99)", true, |p| {
            Some(p.tx_bytes_per_s.p99)
        }),
        ("rx B/s per node (median)", false, |p| {
            Some(p.rx_bytes_per_s.p50)
        }),
    ];
    h.push_str(&growth_plot(
        g,
        "Bytes per node per second",
        "bytes/s",
        &bytes,
    ));
    let mem: [S; 1] = [("peak RSS (MiB)", false, |p| p.perf.peak_rss_mib)];
    h.push_str(&growth_plot(g, "Simulator peak memory", "MiB", &mem));
    let memn: [S; 1] = [("peak RSS per node (KiB)", false, |p| {
        p.perf
            .peak_rss_mib
            .map(|m| m * 1024.0 / p.nodes.max(1) as f64)
    })];
    h.push_str(&growth_plot(
        g,
        "Simulator memory per node",
        "KiB per node",
        &memn,
    ));
    let speed: [S; 1] = [("virtual s per wall s", false, |p| {
        Some(p.perf.virtual_s_per_wall_s)
    })];
    h.push_str(&growth_plot(
        g,
        "Simulator speed",
        "virtual s / wall s",
        &speed,
    ));
    h.push_str("</div>");

    h.push_str("<h2>Figures</h2><table><tr><th>N</th><th>mode</th><th>join 50 / 99 / 100% (s)</th><th>full view 100%: at (s) / after the last start (s)</th><th>crash 50 / 99 / 100% (s)</th><th>leave 100% (s)</th><th>tx msgs/s/node (median, p99)</th><th>tx B/s/node (median, p99)</th><th>rx B/s/node (median)</th><th>false downs</th><th>events</th><th>wall (s)</th><th>virtual s / wall s</th><th>peak RSS (MiB)</th></tr>");
    for p in &g.points {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{} / {} / {}</td><td>{} / {}</td><td>{} / {} / {}</td><td>{}</td><td>{:.1}, {:.1}</td><td>{:.0}, {:.0}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td></tr>",
            p.nodes,
            mode_name(p.mode),
            o2(p.join.t50_s),
            o2(p.join.t99_s),
            o2(p.join.t100_s),
            o2(p.full_view.t100_s),
            o2(p.full_view.after_last_start_s),
            o2(p.crash.t50_s),
            o2(p.crash.t99_s),
            o2(p.crash.t100_s),
            o2(p.leave.t100_s),
            p.tx_msgs_per_s.p50,
            p.tx_msgs_per_s.p99,
            p.tx_bytes_per_s.p50,
            p.tx_bytes_per_s.p99,
            p.rx_bytes_per_s.p50,
            p.false_downs_declared,
            p.perf.events,
            p.perf.wall_s,
            p.perf.virtual_s_per_wall_s,
            p.perf
                .peak_rss_mib
                .map(|m| format!("{m:.0}{}", if p.perf.peak_rss_is_process_peak { " (process peak)" } else { "" }))
                .unwrap_or_else(|| "—".into()),
        );
    }
    h.push_str("</table>");
    if !g.fits.is_empty() {
        h.push_str("<h2>Fits against log2 N</h2><p class=note>t = a + b·log2(N) by least squares over the sizes; b is the seconds each doubling of the cluster adds.</p><table><tr><th>measure</th><th>mode</th><th>a (s)</th><th>b (s per doubling)</th><th>r²</th><th>sizes</th></tr>");
        for f in &g.fits {
            let _ = write!(
                h,
                "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{:.2}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
                esc(&f.measure),
                mode_name(f.mode),
                f.a_s,
                f.per_doubling_s,
                f.r2,
                f.points
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=note>Generated by shoal-sim --sizes. Same seed, same result: every figure but wall time, speed and memory reproduces byte for byte.</p></body></html>\n");
    h
}
