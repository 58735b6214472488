//! The simulator's check model: a shared dependency outage (every check of a service fails)
//! empties the passing view without the health guard and never with it; a single broken
//! instance is removed either way; runs replay from their seed.

use shoal_core::GuardMode;
use shoal_sim::{self as sim, Scenario};
use std::path::Path;

fn scenario() -> Scenario {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/shared-dependency-outage.toml");
    let mut sc = Scenario::load(&p).expect("the shipped scenario");
    // Smaller and shorter than shipped (the debug build is slow): same faults.
    sc.nodes = 20;
    sc.duration = sim::scenario::Dur::secs(150);
    sc.faults[1].at = sim::scenario::Dur::secs(125);
    sc.faults[1].duration = Some(sim::scenario::Dur::secs(20));
    sc.validate().expect("still valid");
    sc
}

#[test]
fn guard_keeps_a_passing_provider_through_a_shared_outage() {
    let sc = scenario();
    let on = sim::run(&sc, GuardMode::Enforce, &mut |_| {}).expect("run");
    let off = sim::run(&sc, GuardMode::Off, &mut |_| {}).expect("run");
    let (h_on, h_off) = (on.health.clone().unwrap(), off.health.clone().unwrap());
    assert_eq!(h_on.no_passing_s, 0.0, "{h_on:?}");
    // Without the guard every node's passing view of api is empty for most of the 60 s.
    let api = h_off.services.iter().find(|s| s.name == "api").unwrap();
    assert_eq!(api.nodes_affected, 20, "{h_off:?}");
    assert!(api.no_passing_s >= 20.0 * 40.0, "{h_off:?}");
    // One db instance broken: the others pass, nobody is left without one.
    let db = h_off.services.iter().find(|s| s.name == "db").unwrap();
    assert_eq!(db.no_passing_s, 0.0);
    assert!(h_on.published >= 4, "the failures were published: {h_on:?}");
    // Replays byte for byte.
    let again = sim::run(&sc, GuardMode::Enforce, &mut |_| {}).expect("run");
    assert_eq!(
        sim::deterministic_json(&on),
        sim::deterministic_json(&again)
    );
}
