//! Bounded runs of the fuzz targets (`shoal::fuzzing`, the same ones `fuzz/` runs for long
//! with cargo-fuzz): random inputs and mutations of valid ones, a fixed number of cases each.

use proptest::prelude::*;
use shoal::fuzzing;

fn mutate(seed: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut v = seed.to_vec();
    for (pos, b) in edits {
        if !v.is_empty() {
            let i = pos % v.len();
            v[i] ^= b;
        }
    }
    if cut > 0 && cut < v.len() {
        v.truncate(v.len() - cut % v.len());
    }
    v
}

#[test]
fn seeds_run_clean() {
    for s in fuzzing::datagram_seeds() {
        fuzzing::datagram(&s);
    }
    for s in fuzzing::api_seeds() {
        fuzzing::api_request(&s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn datagram_random(data in proptest::collection::vec(any::<u8>(), 0..1500)) {
        fuzzing::datagram(&data);
    }

    #[test]
    fn datagram_mutated(
        which in 0usize..64,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in 0usize..64,
    ) {
        let seeds = fuzzing::datagram_seeds();
        let s = &seeds[which % seeds.len()];
        let mut m = mutate(s, &edits, cut);
        // Keep the mode byte: mutations then land behind the seal too.
        if let (Some(a), Some(b)) = (m.first_mut(), s.first()) {
            *a = *b;
        }
        fuzzing::datagram(&m);
    }

    #[test]
    fn api_random(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::api_request(&data);
    }

    #[test]
    fn api_mutated(
        which in 0usize..64,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in 0usize..32,
    ) {
        let seeds = fuzzing::api_seeds();
        fuzzing::api_request(&mutate(&seeds[which % seeds.len()], &edits, cut));
    }
}
