//! Unit tests of `core::coordinate`: convergence on a synthetic layout of racks, the minimum
//! filter against scheduling noise, validation of peers' coordinates and the table's bound.

use super::*;

/// 3 racks of 4 nodes behind one switch: 0.2 ms round trips inside a rack; between racks
/// each rack's uplink adds its share (1, 2 and 4 ms), so 3, 5 and 6 ms across.
fn true_rtt_us(a: usize, b: usize) -> u64 {
    const UPLINK: [u64; 3] = [1_000, 2_000, 4_000];
    let (ra, rb) = (a / 4, b / 4);
    if a == b {
        0
    } else if ra == rb {
        200
    } else {
        UPLINK[ra] + UPLINK[rb]
    }
}

/// A deterministic stream for the test's choices and noise.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Runs `rounds` probe rounds (each node probes one random peer) with `noise_us` of positive
/// jitter at most on one sample in three; returns the nodes' tables.
fn run(n: usize, rounds: usize, noise_us: u64, seed: u64) -> Vec<Coordinates> {
    let names: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("n{i}"))).collect();
    let mut nodes: Vec<Coordinates> = (0..n).map(|i| Coordinates::new(i as u64 + 1)).collect();
    let mut rng = Lcg(seed);
    for _ in 0..rounds {
        for a in 0..n {
            let b = (a + 1 + rng.next() as usize % (n - 1)) % n;
            // The probed node sends its coordinate, then the ack's RTT arrives.
            let theirs = nodes[b].own().clone();
            nodes[a].peer_coordinate(&names[b], theirs);
            let jitter = if noise_us > 0 && rng.next().is_multiple_of(3) {
                rng.next() % noise_us
            } else {
                0
            };
            nodes[a].observe_rtt(&names[b], true_rtt_us(a, b) + jitter);
        }
    }
    nodes
}

fn median_relative_error(nodes: &[Coordinates]) -> f64 {
    let mut errs = Vec::new();
    for a in 0..nodes.len() {
        for b in 0..nodes.len() {
            if a != b {
                let est = nodes[a].own().rtt_us(nodes[b].own()) as f64;
                let real = true_rtt_us(a, b) as f64;
                errs.push((est - real).abs() / real);
            }
        }
    }
    errs.sort_by(|x, y| x.total_cmp(y));
    errs[errs.len() / 2]
}

#[test]
fn converges_on_racks() {
    let nodes = run(12, 400, 0, 7);
    let err = median_relative_error(&nodes);
    assert!(err < 0.05, "median relative error {err}");
    // Nearest first works: every node's rack mates are estimated nearer than any other node.
    for a in 0..12 {
        let mates = (0..12).filter(|b| *b != a && b / 4 == a / 4);
        let far = (0..12).filter(|b| b / 4 != a / 4);
        let worst_mate = mates
            .map(|b| nodes[a].own().rtt_us(nodes[b].own()))
            .max()
            .unwrap_or(0);
        let best_far = far
            .map(|b| nodes[a].own().rtt_us(nodes[b].own()))
            .min()
            .unwrap_or(u64::MAX);
        assert!(
            worst_mate < best_far,
            "node {a}: {worst_mate} vs {best_far}"
        );
    }
    assert!(nodes.iter().all(|n| n.own().error < 0.1));
}

#[test]
fn minimum_filter_keeps_lan_estimates_close_under_jitter() {
    // Up to 1 ms of wake-up jitter on a third of the samples, five times the in-rack RTT.
    let nodes = run(12, 400, 1_000, 11);
    let mut in_rack = Vec::new();
    for a in 0..12 {
        for b in 0..12 {
            if a != b && a / 4 == b / 4 {
                in_rack.push(nodes[a].own().rtt_us(nodes[b].own()));
            }
        }
    }
    in_rack.sort_unstable();
    let median = in_rack[in_rack.len() / 2];
    assert!(
        (100..=400).contains(&median),
        "in-rack median estimate {median} us for a real 200 us"
    );
    assert!(median_relative_error(&nodes) < 0.25);
}

#[test]
fn deterministic_for_a_seed() {
    let a = run(6, 50, 300, 3);
    let b = run(6, 50, 300, 3);
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x.own(), y.own());
    }
}

#[test]
fn refuses_insane_coordinates() {
    let good = WireCoord::from_coord(&Coordinate::default());
    assert!(good.validate().is_ok());
    let mut nan = good.clone();
    nan.vec[3] = f32::NAN;
    assert_eq!(nan.validate(), Err(BadCoordinate));
    let mut inf = good.clone();
    inf.height = f32::INFINITY;
    assert_eq!(inf.validate(), Err(BadCoordinate));
    let mut huge = good.clone();
    huge.vec[0] = 1e9;
    assert_eq!(huge.validate(), Err(BadCoordinate));
    let mut negative = good.clone();
    negative.error = -1.0;
    assert_eq!(negative.validate(), Err(BadCoordinate));
    let mut adj = good;
    adj.adjustment = -11.0;
    assert_eq!(adj.validate(), Err(BadCoordinate));
}

#[test]
fn bad_rtts_change_nothing() {
    let mut c = Coordinates::new(1);
    let peer: Arc<str> = Arc::from("p");
    c.peer_coordinate(&peer, Coordinate::default());
    let before = c.own().clone();
    assert!(!c.observe_rtt(&peer, 0));
    assert!(!c.observe_rtt(&peer, MAX_RTT_US + 1));
    let mut v = Vivaldi::new(1);
    assert!(!v.observe(&Coordinate::default(), f64::NAN));
    assert!(!v.observe(&Coordinate::default(), -1.0));
    assert_eq!(c.own(), &before);
    // A sane one moves it; without the peer's coordinate nothing moves.
    assert!(c.observe_rtt(&peer, 500));
    assert_ne!(c.own(), &before);
    assert!(!c.observe_rtt(&Arc::from("unknown"), 500));
}

#[test]
fn the_peer_table_is_bounded() {
    let mut c = Coordinates::new(1);
    for i in 0..MAX_PEERS + 10 {
        c.peer_coordinate(&Arc::from(format!("p{i}")), Coordinate::default());
    }
    assert_eq!(c.peers().count(), MAX_PEERS);
    assert!(c.peer("p0").is_none(), "the oldest went first");
    assert!(c.peer(&format!("p{}", MAX_PEERS + 9)).is_some());
}
