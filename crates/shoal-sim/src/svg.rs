//! Hand-written SVG line plots for the report (no JavaScript, no external assets).
//!
//! Owns axis scaling, "nice" ticks, lines with gaps (NaN), shaded time windows and legends.
//! Must not know what is plotted.

use std::fmt::Write;

pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

pub struct Line {
    pub name: String,
    pub color: String,
    /// (x, y); a NaN y breaks the line.
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    pub width: f64,
    /// Draw a dot at every point (for plots with few points).
    pub markers: bool,
}

impl Line {
    pub fn new(name: impl Into<String>, color: &str, points: Vec<(f64, f64)>) -> Line {
        Line {
            name: name.into(),
            color: color.to_string(),
            points,
            dashed: false,
            width: 1.5,
            markers: false,
        }
    }

    pub fn dashed(mut self) -> Line {
        self.dashed = true;
        self
    }

    pub fn markers(mut self) -> Line {
        self.markers = true;
        self
    }
}

pub struct Shade {
    pub x0: f64,
    pub x1: f64,
    pub label: String,
}

pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    pub shades: Vec<Shade>,
    pub width: f64,
    pub height: f64,
    /// Force the y axis to start at zero.
    pub y_zero: bool,
    /// Logarithmic x axis (base 10; points with x <= 0 are skipped).
    pub x_log: bool,
}

impl Plot {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Plot {
        Plot {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            lines: Vec::new(),
            shades: Vec::new(),
            width: 560.0,
            height: 280.0,
            y_zero: true,
            x_log: false,
        }
    }
}

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick positions covering [lo, hi] with a 1-2-5 step.
fn ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-6 && out.len() < 50 {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Decade ticks (1, 2, 5 per decade when there are few decades) within [lo, hi] (log10):
/// (position, value).
fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let (a, b) = (lo.floor() as i32, hi.ceil() as i32);
    let mults: &[f64] = if b - a <= 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    for e in a..=b {
        for m in mults {
            let v = m * 10f64.powi(e);
            let t = v.log10();
            if t >= lo - 1e-9 && t <= hi + 1e-9 && out.len() < 50 {
                out.push((t, v));
            }
        }
    }
    out
}

pub fn render(p: &Plot) -> String {
    // The legend wraps below the plot: the picture grows by its extra lines.
    let (ml, mr, mt, mb) = (58.0, 12.0, 28.0, 62.0);
    let mut rows = 1usize;
    let mut lx = ml;
    for l in &p.lines {
        let lw = 26.0 + 6.0 * l.name.len() as f64;
        if lx + lw > p.width - mr && lx > ml {
            lx = ml;
            rows += 1;
        }
        lx += lw;
    }
    let (w, h) = (p.width, p.height + 13.0 * (rows - 1) as f64);
    let tx = |x: f64| -> f64 {
        if !p.x_log {
            x
        } else if x > 0.0 {
            x.log10()
        } else {
            f64::NAN
        }
    };
    let pw = w - ml - mr;
    let ph = p.height - mt - mb;
    let pts = p
        .lines
        .iter()
        .flat_map(|l| l.points.iter())
        .map(|(x, y)| (tx(*x), *y))
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    for s in &p.shades {
        x0 = x0.min(tx(s.x0));
        x1 = x1.max(tx(s.x1));
    }
    if p.x_log && x0 <= x1 {
        // Some room around the first and last points.
        let pad = ((x1 - x0) * 0.06).max(0.05);
        x0 -= pad;
        x1 += pad;
    }
    if x0 > x1 {
        x0 = 0.0;
        x1 = 1.0;
    }
    if y0 > y1 {
        y0 = 0.0;
        y1 = 1.0;
    }
    if p.y_zero {
        y0 = y0.min(0.0);
    }
    if (y1 - y0).abs() < 1e-9 {
        y1 = y0 + 1.0;
    }
    if (x1 - x0).abs() < 1e-9 {
        x1 = x0 + 1.0;
    }
    y1 += (y1 - y0) * 0.05;
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| mt + ph - (y - y0) / (y1 - y0) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>"##
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(&p.title)
    );
    for sh in &p.shades {
        let a = sx(tx(sh.x0).max(x0));
        let b = sx(tx(sh.x1).min(x1)).max(a + 1.5);
        let _ = write!(
            s,
            r##"<rect x="{a:.1}" y="{mt}" width="{:.1}" height="{ph}" fill="#f5a623" fill-opacity="0.18"><title>{}</title></rect>"##,
            b - a,
            esc(&sh.label)
        );
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#a66">{}</text>"##,
            a + 2.0,
            mt + 10.0,
            esc(&sh.label)
        );
    }
    for t in ticks(y0, y1, 5) {
        let y = sy(t);
        let _ = write!(
            s,
            r##"<line x1="{ml}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 4.0,
            y + 4.0,
            fmt_num(t)
        );
    }
    let xticks = if p.x_log {
        log_ticks(x0, x1)
    } else {
        ticks(x0, x1, 8).into_iter().map(|t| (t, t)).collect()
    };
    for (t, label) in xticks {
        let x = sx(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{mt}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            mt + ph,
            mt + ph + 14.0,
            fmt_num(label)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
    );
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        mt + ph + 28.0,
        esc(&p.x_label)
    );
    let _ = write!(
        s,
        r#"<text transform="translate(12,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        mt + ph / 2.0,
        esc(&p.y_label)
    );
    for l in &p.lines {
        let mut d = String::new();
        let mut pen = false;
        let mut dots = String::new();
        for (x, y) in &l.points {
            let x = tx(*x);
            if !(x.is_finite() && y.is_finite()) {
                pen = false;
                continue;
            }
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if pen { "L" } else { "M" },
                sx(x),
                sy(*y)
            );
            if l.markers {
                let _ = write!(
                    dots,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                    sx(x),
                    sy(*y),
                    l.color
                );
            }
            pen = true;
        }
        if d.is_empty() {
            continue;
        }
        let dash = if l.dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<path d="{d}" fill="none" stroke="{}" stroke-width="{}"{dash}><title>{}</title></path>"#,
            l.color,
            l.width,
            esc(&l.name)
        );
        s.push_str(&dots);
    }
    // Legend below the plot, wrapping.
    let mut lx = ml;
    let mut ly = mt + ph + 44.0;
    for l in &p.lines {
        let label = esc(&l.name);
        let lw = 26.0 + 6.0 * l.name.len() as f64;
        if lx + lw > w - mr && lx > ml {
            lx = ml;
            ly += 13.0;
        }
        let dash = if l.dashed {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<line x1="{lx:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            lx + 16.0,
            ly - 4.0,
            ly - 4.0,
            l.color,
            lx + 19.0,
            ly
        );
        lx += lw;
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn renders_lines_with_gaps() {
        let mut p = Plot::new("t", "x", "y");
        p.lines.push(Line::new(
            "a<b",
            PALETTE[0],
            vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0)],
        ));
        p.shades.push(Shade {
            x0: 0.5,
            x1: 1.5,
            label: "cut".into(),
        });
        let s = render(&p);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("a&lt;b"));
        assert!(s.matches('M').count() >= 2);
    }

    #[test]
    fn log_axis_has_decade_ticks() {
        let mut p = Plot::new("t", "nodes", "s");
        p.x_log = true;
        p.lines
            .push(Line::new("join", PALETTE[0], vec![(100.0, 1.0), (10_000.0, 3.0)]).markers());
        let s = render(&p);
        assert!(s.contains(">100<") && s.contains(">1000<") && s.contains(">10k<"));
        assert_eq!(s.matches("<circle").count(), 2);
    }
}
