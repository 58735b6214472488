/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
//! (shoal fork) Tests of Lifeguard (`lifeguard.rs`) through `Foca`.

use super::*;
use alloc::vec;
use bytes::{Buf, BufMut};
use rand::{SeedableRng, rngs::SmallRng};

use crate::testing::{BadCodec, ID};

const MIN: Duration = Duration::from_secs(4);

fn lifeguard() -> Lifeguard {
    Lifeguard {
        max_health: 8,
        suspicion_permille: vec![6000, 2845, 1000],
        confirmations: 2,
        prompt_probers: 0,
        down_transmissions: 1,
    }
}

fn foca_with(
    members: u8,
    lg: Option<Lifeguard>,
) -> (
    Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>,
    AccumulatingRuntime<ID>,
) {
    let mut config = Config::simple();
    config.suspect_to_down_after = MIN;
    let mut foca = Foca::new(ID::new(1), config, SmallRng::seed_from_u64(7), BadCodec);
    foca.set_lifeguard(lg);
    let mut rt = AccumulatingRuntime::new();
    for i in 2..=members {
        foca.apply(Member::alive(ID::new(i)), &mut rt).unwrap();
    }
    rt.clear();
    (foca, rt)
}

/// Runs one probe cycle start; returns the member probed and the delays of the
/// indirect-probe and next-probe timers.
fn start_probe(
    foca: &mut Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>,
    rt: &mut AccumulatingRuntime<ID>,
) -> (ID, Duration, Duration) {
    let token = foca.timer_token();
    foca.handle_timer(Timer::ProbeRandomMember(token), &mut *rt)
        .unwrap();
    let probed = *foca.probe().target().unwrap();
    let indirect = rt
        .take_scheduling(Timer::SendIndirectProbe {
            probed_id: probed,
            token,
        })
        .unwrap();
    let next = rt.take_scheduling(Timer::ProbeRandomMember(token)).unwrap();
    (probed, indirect, next)
}

fn ack(from: ID, probe_number: ProbeNumber, incarnation: Incarnation) -> Vec<u8> {
    let mut buf = Vec::new();
    BadCodec
        .encode_header(
            &Header {
                src: from,
                src_incarnation: incarnation,
                dst: ID::new(1),
                message: Message::Ack(probe_number),
            },
            &mut buf,
        )
        .unwrap();
    buf
}

fn fail_probe(
    foca: &mut Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>,
    rt: &mut AccumulatingRuntime<ID>,
    probed: ID,
) {
    let token = foca.timer_token();
    foca.handle_timer(
        Timer::SendIndirectProbe {
            probed_id: probed,
            token,
        },
        &mut *rt,
    )
    .unwrap();
}

fn suspect_timer(rt: &mut AccumulatingRuntime<ID>, id: ID, token: TimerToken) -> Option<Duration> {
    let mut found = None;
    while let Some((after, t)) = rt.to_schedule() {
        if let Timer::ChangeSuspectToDown {
            member_id,
            token: tk,
            ..
        } = t
            && member_id == id
            && tk == token
        {
            found = Some(after);
        }
    }
    found
}

#[test]
fn local_health_stretches_probes_on_failures_and_recovers_on_success() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    let period = foca.config.probe_period;
    let rtt = foca.config.probe_rtt;
    let (first, indirect, next) = start_probe(&mut foca, &mut rt);
    assert_eq!((indirect, next), (rtt, period));
    fail_probe(&mut foca, &mut rt, first);
    rt.clear();
    // The next cycle takes the failure: score 1, timers doubled.
    let (second, indirect, next) = start_probe(&mut foca, &mut rt);
    assert_eq!(foca.local_health(), 1);
    assert_eq!((indirect, next), (rtt * 2, period * 2));
    fail_probe(&mut foca, &mut rt, second);
    rt.clear();
    let (third, _, next) = start_probe(&mut foca, &mut rt);
    assert_eq!(foca.local_health(), 2);
    assert_eq!(next, period * 3);
    // An ack: the following cycle lowers the score again.
    let probe_number = foca.probe().probe_number();
    foca.handle_data(&ack(third, probe_number, 0), &mut rt)
        .unwrap();
    fail_probe(&mut foca, &mut rt, third);
    rt.clear();
    let (_, _, next) = start_probe(&mut foca, &mut rt);
    assert_eq!(foca.local_health(), 1);
    assert_eq!(next, period * 2);
}

#[test]
fn local_health_is_capped_and_off_without_lifeguard() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    for _ in 0..20 {
        let (p, _, _) = start_probe(&mut foca, &mut rt);
        fail_probe(&mut foca, &mut rt, p);
        rt.clear();
    }
    assert_eq!(foca.local_health(), 8);
    let (mut foca, mut rt) = foca_with(6, None);
    let period = foca.config.probe_period;
    for _ in 0..5 {
        let (p, _, next) = start_probe(&mut foca, &mut rt);
        assert_eq!(next, period);
        fail_probe(&mut foca, &mut rt, p);
        rt.clear();
    }
    assert_eq!(foca.local_health(), 0);
    assert!(foca.take_accusations().is_empty());
}

#[test]
fn suspicion_starts_long_and_confirmations_shorten_it() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    foca.set_now(Duration::from_secs(100));
    let (probed, _, _) = start_probe(&mut foca, &mut rt);
    fail_probe(&mut foca, &mut rt, probed);
    rt.clear();
    let token = foca.timer_token();
    start_probe(&mut foca, &mut rt);
    // Our own failed probe: suspect, accused by us, timer at 6x the minimum.
    assert_eq!(foca.take_accusations(), vec![(probed, 0)]);
    assert_eq!(suspect_timer(&mut rt, probed, token), Some(MIN * 6));
    // 10 s later a first independent accuser: 4 s x 2.845 = 11.38 s from the start.
    foca.set_now(Duration::from_secs(110));
    let other = [2, 3, 4, 5, 6]
        .map(ID::new)
        .into_iter()
        .find(|i| *i != probed)
        .unwrap();
    assert!(foca.confirm_suspicion(&probed, 0, &other, &mut rt));
    assert!(
        !foca.confirm_suspicion(&probed, 0, &other, &mut rt),
        "counted once"
    );
    assert!(
        !foca.confirm_suspicion(&probed, 1, &other, &mut rt),
        "other incarnation"
    );
    assert_eq!(
        suspect_timer(&mut rt, probed, token),
        Some(Duration::from_millis(1380))
    );
    // The first timer fires early: nothing happens, the member stays suspect.
    let timer = Timer::ChangeSuspectToDown {
        member_id: probed,
        incarnation: 0,
        token,
    };
    foca.handle_timer(timer.clone(), &mut rt).unwrap();
    assert_eq!(
        foca.members.get(&probed).map(|m| m.state()),
        Some(State::Suspect)
    );
    // A second confirmation: the minimum, already past: due now.
    let third = [2, 3, 4, 5, 6]
        .map(ID::new)
        .into_iter()
        .find(|i| *i != probed && *i != other)
        .unwrap();
    assert!(foca.confirm_suspicion(&probed, 0, &third, &mut rt));
    assert_eq!(suspect_timer(&mut rt, probed, token), Some(Duration::ZERO));
    foca.handle_timer(timer, &mut rt).unwrap();
    assert_eq!(
        foca.members.get(&probed).map(|m| m.state()),
        Some(State::Down)
    );
}

#[test]
fn small_clusters_use_the_minimum() {
    // Us, the suspect and one more: two confirmations can never come.
    let (mut foca, mut rt) = foca_with(3, Some(lifeguard()));
    let (probed, _, _) = start_probe(&mut foca, &mut rt);
    fail_probe(&mut foca, &mut rt, probed);
    rt.clear();
    let token = foca.timer_token();
    start_probe(&mut foca, &mut rt);
    assert_eq!(suspect_timer(&mut rt, probed, token), Some(MIN));
}

#[test]
fn refuting_raises_local_health() {
    let (mut foca, mut rt) = foca_with(4, Some(lifeguard()));
    let mut buf = Vec::new();
    BadCodec
        .encode_header(
            &Header {
                src: ID::new(2),
                src_incarnation: 0,
                dst: ID::new(1),
                message: Message::Gossip,
            },
            &mut buf,
        )
        .unwrap();
    buf.put_u16(1);
    BadCodec
        .encode_member(&Member::new(ID::new(1), 0, State::Suspect), &mut buf)
        .unwrap();
    foca.handle_data(&buf, &mut rt).unwrap();
    assert_eq!(foca.incarnation(), 1);
    assert_eq!(foca.local_health(), 1);
}

#[test]
fn a_ping_to_a_suspect_carries_the_suspicion() {
    for lg in [Some(lifeguard()), None] {
        let on = lg.is_some();
        let (mut foca, mut rt) = foca_with(2, lg);
        foca.apply(Member::new(ID::new(2), 3, State::Suspect), &mut rt)
            .unwrap();
        // Let the suspicion's own broadcast run out, so only the buddy system can carry it.
        for _ in 0..20 {
            foca.gossip(&mut rt).unwrap();
        }
        rt.clear();
        start_probe(&mut foca, &mut rt);
        let data = rt.take_data(ID::new(2)).unwrap();
        let mut data = &data[..];
        let header = BadCodec.decode_header(&mut data).unwrap();
        assert!(matches!(header.message, Message::Ping(_)));
        let n = if data.remaining() >= 2 {
            data.get_u16()
        } else {
            0
        };
        let mut updates = Vec::new();
        for _ in 0..n {
            updates.push(BadCodec.decode_member(&mut data).unwrap());
        }
        let carried = updates.contains(&Member::new(ID::new(2), 3, State::Suspect));
        assert_eq!(carried, on, "lifeguard {on}");
    }
}

#[test]
fn a_member_that_only_hears_of_a_suspicion_probes_the_suspect_itself() {
    for lg in [Some(lifeguard()), None] {
        let on = lg.is_some();
        let (mut foca, mut rt) = foca_with(6, lg);
        foca.set_now(Duration::from_secs(50));
        let token = foca.timer_token();
        foca.apply(Member::new(ID::new(4), 2, State::Suspect), &mut rt)
            .unwrap();
        let armed = suspect_timer(&mut rt, ID::new(4), token);
        assert_eq!(armed, on.then_some(MIN * 6), "lifeguard {on}");
        if !on {
            continue;
        }
        // Three accusers known (two confirmations): due at the minimum after hearing.
        foca.set_now(Duration::from_secs(51));
        for a in [2, 3, 5] {
            foca.confirm_suspicion(&ID::new(4), 2, &ID::new(a), &mut rt);
        }
        assert_eq!(
            suspect_timer(&mut rt, ID::new(4), token),
            Some(Duration::from_secs(3))
        );
        foca.set_now(Duration::from_secs(54));
        let timer = Timer::ChangeSuspectToDown {
            member_id: ID::new(4),
            incarnation: 2,
            token,
        };
        foca.handle_timer(timer, &mut rt).unwrap();
        // Not declared on hearsay: still suspect, and probed next.
        assert_eq!(
            foca.members.get(&ID::new(4)).map(|m| m.state()),
            Some(State::Suspect)
        );
        let (probed, _, _) = start_probe(&mut foca, &mut rt);
        assert_eq!(probed, ID::new(4));
        // The probe fails: now we accuse too, from now on: three accusers
        // agree, so the minimum from now.
        fail_probe(&mut foca, &mut rt, probed);
        rt.clear();
        start_probe(&mut foca, &mut rt);
        assert_eq!(foca.local_health(), 1);
        assert_eq!(foca.take_accusations(), vec![(ID::new(4), 2)]);
        assert_eq!(suspect_timer(&mut rt, ID::new(4), token), Some(MIN));
        foca.set_now(Duration::from_secs(58));
        let timer = Timer::ChangeSuspectToDown {
            member_id: ID::new(4),
            incarnation: 2,
            token,
        };
        foca.handle_timer(timer, &mut rt).unwrap();
        assert_eq!(
            foca.members.get(&ID::new(4)).map(|m| m.state()),
            Some(State::Down)
        );
        assert_eq!(foca.probe_failures(), 1);
    }
}

#[test]
fn a_down_notice_about_an_older_incarnation_is_ignored() {
    for lg in [Some(lifeguard()), None] {
        let on = lg.is_some();
        let (mut foca, mut rt) = foca_with(4, lg);
        foca.apply(Member::new(ID::new(3), 5, State::Alive), &mut rt)
            .unwrap();
        foca.apply(Member::new(ID::new(3), 4, State::Down), &mut rt)
            .unwrap();
        let state = foca.members.get(&ID::new(3)).map(|m| m.state());
        assert_eq!(
            state,
            Some(if on { State::Alive } else { State::Down }),
            "lifeguard {on}"
        );
        if on {
            // The current incarnation still goes down.
            foca.apply(Member::new(ID::new(3), 5, State::Down), &mut rt)
                .unwrap();
            assert_eq!(
                foca.members.get(&ID::new(3)).map(|m| m.state()),
                Some(State::Down)
            );
        }
    }
}

#[test]
fn a_stale_down_notice_makes_us_probe_and_declare_if_the_probe_fails() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    foca.set_now(Duration::from_secs(10));
    foca.apply(Member::new(ID::new(3), 5, State::Alive), &mut rt)
        .unwrap();
    foca.apply(Member::new(ID::new(3), 4, State::Down), &mut rt)
        .unwrap();
    rt.clear();
    let token = foca.timer_token();
    let (probed, _, _) = start_probe(&mut foca, &mut rt);
    assert_eq!(probed, ID::new(3), "probed at once");
    fail_probe(&mut foca, &mut rt, probed);
    rt.clear();
    start_probe(&mut foca, &mut rt);
    // Nobody else can confirm (they hold it down): the minimum, not 6x.
    assert_eq!(suspect_timer(&mut rt, ID::new(3), token), Some(MIN));
    foca.set_now(Duration::from_secs(14));
    let timer = Timer::ChangeSuspectToDown {
        member_id: ID::new(3),
        incarnation: 5,
        token,
    };
    foca.handle_timer(timer, &mut rt).unwrap();
    assert_eq!(
        foca.members.get(&ID::new(3)).map(|m| m.state()),
        Some(State::Down)
    );
}

#[test]
fn a_stale_down_notice_about_a_member_that_answers_changes_nothing() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    foca.apply(Member::new(ID::new(3), 5, State::Alive), &mut rt)
        .unwrap();
    foca.apply(Member::new(ID::new(3), 4, State::Down), &mut rt)
        .unwrap();
    rt.clear();
    let (probed, _, _) = start_probe(&mut foca, &mut rt);
    assert_eq!(probed, ID::new(3));
    let probe_number = foca.probe().probe_number();
    foca.handle_data(&ack(probed, probe_number, 5), &mut rt)
        .unwrap();
    fail_probe(&mut foca, &mut rt, probed);
    for _ in 0..10 {
        let (p, _, _) = start_probe(&mut foca, &mut rt);
        let n = foca.probe().probe_number();
        foca.handle_data(&ack(p, n, if p == ID::new(3) { 5 } else { 0 }), &mut rt)
            .unwrap();
        fail_probe(&mut foca, &mut rt, p);
        rt.clear();
    }
    assert_eq!(
        foca.members.get(&ID::new(3)).map(|m| m.state()),
        Some(State::Alive)
    );
    assert_eq!(foca.probe_failures(), 0);
}

#[test]
fn a_renewed_member_starts_with_a_fresh_suspicion() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    foca.set_now(Duration::from_secs(10));
    let token = foca.timer_token();
    let old = ID::new(3);
    foca.apply(Member::new(old, 0, State::Suspect), &mut rt)
        .unwrap();
    for a in [2, 4, 5] {
        assert!(foca.confirm_suspicion(&old, 0, &ID::new(a), &mut rt));
    }
    assert_eq!(suspect_timer(&mut rt, old, token), Some(MIN));
    // The member renews itself (a newer identity at the same address) and
    // is suspected again, at incarnation 0 like its former life.
    let new = old.bump();
    foca.apply(Member::alive(new), &mut rt).unwrap();
    foca.set_now(Duration::from_secs(12));
    foca.apply(Member::new(new, 0, State::Suspect), &mut rt)
        .unwrap();
    // Nothing of the old suspicion carries over: no confirmations, 6x from now.
    assert_eq!(suspect_timer(&mut rt, new, token), Some(MIN * 6));
    // The old life's three accusers do not count for the new one: two
    // accusers of the new life are one confirmation.
    assert!(foca.confirm_suspicion(&new, 0, &ID::new(2), &mut rt));
    assert!(foca.confirm_suspicion(&new, 0, &ID::new(4), &mut rt));
    assert_eq!(
        suspect_timer(&mut rt, new, token),
        Some(Duration::from_millis(11_380))
    );
    // The old life's timer ends: nothing happens to the new one.
    foca.set_now(Duration::from_secs(14));
    foca.handle_timer(
        Timer::ChangeSuspectToDown {
            member_id: old,
            incarnation: 0,
            token,
        },
        &mut rt,
    )
    .unwrap();
    assert_eq!(foca.members.get(&new).map(|m| m.state()), Some(State::Suspect));
}

#[test]
fn a_timer_that_fires_before_the_deadline_waits_for_it() {
    let (mut foca, mut rt) = foca_with(6, Some(lifeguard()));
    // A deadline that is not a whole number of milliseconds: a driver
    // with a millisecond clock fires its timer a fraction early.
    foca.config.suspect_to_down_after = MIN + Duration::from_micros(700);
    foca.set_now(Duration::from_secs(20));
    let token = foca.timer_token();
    let (probed, _, _) = start_probe(&mut foca, &mut rt);
    fail_probe(&mut foca, &mut rt, probed);
    rt.clear();
    start_probe(&mut foca, &mut rt);
    let others: Vec<ID> = [2, 3, 4, 5, 6]
        .map(ID::new)
        .into_iter()
        .filter(|i| *i != probed)
        .collect();
    for a in &others[..2] {
        assert!(foca.confirm_suspicion(&probed, 0, a, &mut rt));
    }
    let after = suspect_timer(&mut rt, probed, token).unwrap();
    assert_eq!(after, MIN + Duration::from_micros(700));
    let timer = Timer::ChangeSuspectToDown {
        member_id: probed,
        incarnation: 0,
        token,
    };
    // Fired at the whole millisecond before the deadline.
    foca.set_now(Duration::from_secs(24));
    foca.handle_timer(timer.clone(), &mut rt).unwrap();
    assert_eq!(
        foca.members.get(&probed).map(|m| m.state()),
        Some(State::Suspect),
        "not before the deadline"
    );
    // ... and it is not lost: it comes back at the deadline.
    assert_eq!(
        suspect_timer(&mut rt, probed, token),
        Some(Duration::from_millis(1))
    );
    foca.set_now(Duration::from_millis(24_001));
    foca.handle_timer(timer, &mut rt).unwrap();
    assert_eq!(
        foca.members.get(&probed).map(|m| m.state()),
        Some(State::Down)
    );
}

#[test]
fn a_prompt_prober_probes_a_suspect_as_soon_as_it_hears_of_it() {
    for prompt in [8, 0] {
        let mut lg = lifeguard();
        lg.prompt_probers = prompt;
        // Fewer members than `prompt_probers`: every one that hears probes.
        let (mut foca, mut rt) = foca_with(8, Some(lg));
        foca.set_now(Duration::from_secs(30));
        // Probe a few members first so the suspect is not simply next.
        let mut firsts = Vec::new();
        for _ in 0..3 {
            let (p, _, _) = start_probe(&mut foca, &mut rt);
            let n = foca.probe().probe_number();
            foca.handle_data(&ack(p, n, 0), &mut rt).unwrap();
            fail_probe(&mut foca, &mut rt, p);
            firsts.push(p);
        }
        let suspect = [2, 3, 4, 5, 6, 7, 8]
            .map(ID::new)
            .into_iter()
            .find(|i| !firsts.contains(i))
            .unwrap();
        foca.apply(Member::new(suspect, 0, State::Suspect), &mut rt)
            .unwrap();
        let (next, _, _) = start_probe(&mut foca, &mut rt);
        if prompt > 0 {
            assert_eq!(next, suspect, "probed at our next probe");
        }
        rt.clear();
    }
}

#[test]
fn a_down_notice_is_spread_down_transmissions_times_as_often() {
    let mut sent = Vec::new();
    for times in [1, 3] {
        let mut lg = lifeguard();
        lg.down_transmissions = times;
        let (mut foca, mut rt) = foca_with(8, Some(lg));
        foca.apply(Member::new(ID::new(3), 0, State::Down), &mut rt)
            .unwrap();
        foca.apply(Member::new(ID::new(4), 1, State::Suspect), &mut rt)
            .unwrap();
        rt.clear();
        let (mut down, mut suspect) = (0, 0);
        for _ in 0..100 {
            foca.gossip(&mut rt).unwrap();
            for (_, data) in rt.take_all_data() {
                let mut data = &data[..];
                BadCodec.decode_header(&mut data).unwrap();
                let n = if data.remaining() >= 2 {
                    data.get_u16()
                } else {
                    0
                };
                for _ in 0..n {
                    let m = BadCodec.decode_member(&mut data).unwrap();
                    down += usize::from(m.id() == &ID::new(3) && m.state() == State::Down);
                    suspect += usize::from(m.id() == &ID::new(4));
                }
            }
        }
        assert!(suspect > 0);
        sent.push((down, suspect));
    }
    // Other updates as often either way; the down notice three times as often.
    assert_eq!(sent[0].1, sent[1].1);
    assert_eq!(sent[0].0, sent[0].1);
    assert_eq!(sent[1].0, 3 * sent[0].0);
}
