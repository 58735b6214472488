//! Node-level tests of network coordinates (`node::coords`): nodes time their own probes over
//! a network with two racks and estimate the round trips between any two members; a peer's
//! bad or unsolicited coordinate is refused and counted and changes nothing.

use crate::coordinate::{Coordinate, WireCoord};
use crate::sync::ShoalMsg;
use crate::testnet::{addr, TestNet};

/// Two racks of three: 1 ms one way inside a rack, 6 ms across (RTTs 2 and 12 ms).
fn racks(i: usize, j: usize) -> u64 {
    if i / 3 == j / 3 {
        1
    } else {
        6
    }
}

#[test]
fn nodes_estimate_round_trips_from_their_own_probes() {
    let mut net = TestNet::new(6);
    net.latency = Some(racks);
    net.run_for_ms(120_000);
    let n0 = &net.nodes[0];
    let names: Vec<String> = (0..6).map(|i| net.nodes[i].config().name.clone()).collect();
    assert_eq!(n0.coordinates().len(), 6, "its own and every peer's");
    let mut errs = Vec::new();
    for a in 0..6 {
        for b in 0..6 {
            if a == b {
                continue;
            }
            let real = (2_000 * racks(a, b)) as f64;
            let est = n0.rtt_between(&names[a], &names[b]).expect("known").rtt_us as f64;
            errs.push((est - real).abs() / real);
        }
    }
    errs.sort_by(|x, y| x.total_cmp(y));
    let median = errs[errs.len() / 2];
    assert!(median < 0.15, "median relative error {median}: {errs:?}");
    // Nearest first: its rack mates before the other rack.
    let near = n0.rtt_to(&names[1]).expect("known");
    let far = n0.rtt_to(&names[4]).expect("known");
    assert!(near * 3 < far, "{near} vs {far}");
    assert!(n0.stats().coordinate_updates > 20);
    assert_eq!(n0.stats().coordinates_refused, 0);
}

fn coord_datagram(c: WireCoord) -> Vec<u8> {
    let mut d = Vec::new();
    crate::wire::write_header(&mut d, "", crate::wire::Kind::Shoal);
    d.extend_from_slice(&ShoalMsg::Coord(c).encode());
    d
}

#[test]
fn bad_and_unsolicited_coordinates_are_counted_and_change_nothing() {
    let mut net = TestNet::new(3);
    net.run_for_ms(20_000);
    let before = net.nodes[0].coordinates();
    let mut nan = WireCoord::from_coord(&Coordinate::default());
    nan.vec[0] = f32::NAN;
    let mut huge = WireCoord::from_coord(&Coordinate::default());
    huge.height = 1e30;
    let now = net.now;
    // Node 0 probed node 1 recently (three nodes: every round reaches both peers).
    net.nodes[0].handle_datagram(now, addr(1), &coord_datagram(nan));
    net.nodes[0].handle_datagram(now, addr(1), &coord_datagram(huge));
    let good = WireCoord::from_coord(&Coordinate::default());
    net.nodes[0].handle_datagram(now, addr(9), &coord_datagram(good));
    let s = net.nodes[0].stats();
    assert_eq!(s.coordinates_refused, 2);
    assert_eq!(s.coordinates_unsolicited, 1);
    assert_eq!(net.nodes[0].coordinates(), before, "nothing changed");
    let all_finite = |c: &Coordinate| c.vec.iter().all(|x| x.is_finite()) && c.height.is_finite();
    assert!(net.nodes[0]
        .coordinates()
        .iter()
        .all(|(_, c)| all_finite(c)));
}
