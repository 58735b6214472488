#!/usr/bin/env bash
# Issue 23, item 6: is the report's hand-written SVG (crates/shoal-sim/src/svg.rs) worse than
# plotters' SVG backend? Renders the same plot (one 60-point line, axes, title, labels) with
# both in one throwaway crate and prints the bytes of each and what each page can show.
# Usage: bash benches/svg_vs_plotters.sh   (builds in a temp dir; a few minutes the first time)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "svg-vs-plotters"
version = "0.0.0"
edition = "2021"
publish = false
[workspace]
[dependencies]
shoal-sim = { path = "$repo/crates/shoal-sim" }
plotters = { version = "0.3", default-features = false, features = ["svg_backend", "line_series"] }
[patch.crates-io]
foca = { path = "$repo/vendor/foca" }
TOML
cat > "$dir/src/main.rs" <<'RS'
use plotters::prelude::*;
use shoal_sim::svg::{render, Line, Plot, PALETTE};

fn main() {
    let points: Vec<(f64, f64)> = (0..60).map(|x| (x as f64, (x % 10) as f64)).collect();
    let mut p = Plot::new("served members", "virtual s", "members");
    p.lines.push(Line::new("n0", PALETTE[1], points.clone()));
    let ours = render(&p);

    let mut theirs = String::new();
    {
        let root = SVGBackend::with_string(&mut theirs, (560, 280)).into_drawing_area();
        root.fill(&WHITE).expect("fill");
        let mut c = ChartBuilder::on(&root)
            .caption("served members", ("sans-serif", 13))
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..60f64, 0f64..10f64)
            .expect("chart");
        c.configure_mesh()
            .max_light_lines(0)
            .x_desc("virtual s")
            .y_desc("members")
            .draw()
            .expect("mesh");
        c.draw_series(LineSeries::new(points, &RED))
            .expect("line")
            .label("n0");
        root.present().expect("present");
    }
    let title = |s: &str| s.contains("<title>");
    println!("hand-written svg.rs: {:>6} bytes, hover names: {}", ours.len(), title(&ours));
    println!("plotters 0.3 (svg):  {:>6} bytes, hover names: {}", theirs.len(), title(&theirs));
    println!("ratio plotters/ours: {:.1}x", theirs.len() as f64 / ours.len() as f64);
}
RS
CARGO_TARGET_DIR="$dir/target" cargo run -q --release --manifest-path "$dir/Cargo.toml"
