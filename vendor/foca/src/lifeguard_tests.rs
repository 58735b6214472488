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
        // Not declared on hearsay: still suspect, and probed at once, out of
        // turn.
        assert_eq!(
            foca.members.get(&ID::new(4)).map(|m| m.state()),
            Some(State::Suspect)
        );
        let (_, _, n) = prompt_timers(&mut rt, ID::new(4)).expect("probed at once");
        assert_eq!(sent_to(&mut rt, ID::new(4)), Some(Message::Ping(n)));
        // The probe fails: now we accuse too, from now on: three accusers
        // agree, so the minimum from now.
        let token = foca.timer_token();
        let end = Timer::PromptProbeEnd {
            probed_id: ID::new(4),
            probe_number: n,
            token,
        };
        foca.handle_timer(end, &mut rt).unwrap();
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
    assert_eq!(
        foca.members.get(&new).map(|m| m.state()),
        Some(State::Suspect)
    );
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

/// The message `foca` sent to `to` (the last one), if any.
fn sent_to(rt: &mut AccumulatingRuntime<ID>, to: ID) -> Option<Message<ID>> {
    let mut last = None;
    while let Some(data) = rt.take_data(to) {
        let mut data = &data[..];
        last = Some(BadCodec.decode_header(&mut data).unwrap().message);
    }
    last
}

/// The prompt-probe timers scheduled for `id`: (indirect after, end after, probe number).
fn prompt_timers(rt: &mut AccumulatingRuntime<ID>, id: ID) -> Option<(Duration, Duration, u8)> {
    prompt_timers_in(&scheduled(rt), id)
}

fn scheduled(rt: &mut AccumulatingRuntime<ID>) -> Vec<(Duration, Timer<ID>)> {
    core::iter::from_fn(|| rt.to_schedule()).collect()
}

fn prompt_timers_in(timers: &[(Duration, Timer<ID>)], id: ID) -> Option<(Duration, Duration, u8)> {
    let (mut indirect, mut end) = (None, None);
    for (after, t) in timers {
        match t {
            Timer::PromptIndirectProbe {
                probed_id,
                probe_number,
                ..
            } if *probed_id == id => indirect = Some((*after, *probe_number)),
            Timer::PromptProbeEnd {
                probed_id,
                probe_number,
                ..
            } if *probed_id == id => end = Some((*after, *probe_number)),
            _ => {}
        }
    }
    let ((i, n), (e, m)) = (indirect?, end?);
    assert_eq!(n, m);
    Some((i, e, n))
}

fn end_prompt(foca: &mut Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>, id: ID, n: u8) {
    let token = foca.timer_token();
    let mut rt = AccumulatingRuntime::new();
    let timer = Timer::PromptProbeEnd {
        probed_id: id,
        probe_number: n,
        token,
    };
    foca.handle_timer(timer, &mut rt).unwrap();
}

#[test]
fn a_prompt_prober_probes_a_suspect_at_its_next_probe_beside_its_round() {
    for prompt in [8, 0] {
        let mut beside = 0;
        for suspect in (2..=8).map(ID::new) {
            let mut lg = lifeguard();
            lg.prompt_probers = prompt;
            // Fewer members than `prompt_probers`: every one that hears probes.
            let (mut foca, mut rt) = foca_with(8, Some(lg));
            foca.set_now(Duration::from_secs(30));
            foca.apply(Member::new(suspect, 0, State::Suspect), &mut rt)
                .unwrap();
            // Not at once: a burst of loss that made one probe fail would make ours
            // fail too.
            assert_eq!(sent_to(&mut rt, suspect), None);
            rt.clear();
            let (round, _, _) = start_probe(&mut foca, &mut rt);
            let timers = prompt_timers(&mut rt, suspect);
            if prompt == 0 || round == suspect {
                // memberlist waits for its round (or the round reached it anyway).
                assert_eq!(timers, None);
                continue;
            }
            beside += 1;
            let (indirect, end, n) = timers.expect("prompt probe timers");
            assert_eq!(sent_to(&mut rt, suspect), Some(Message::Ping(n)));
            assert_eq!(
                sent_to(&mut rt, round),
                Some(Message::Ping(foca.probe().probe_number()))
            );
            assert_eq!(
                (indirect, end),
                (foca.config.probe_rtt, foca.config.probe_period)
            );
            // No answer by the probe timeout: indirect probes through others.
            let token = foca.timer_token();
            foca.handle_timer(
                Timer::PromptIndirectProbe {
                    probed_id: suspect,
                    probe_number: n,
                    token,
                },
                &mut rt,
            )
            .unwrap();
            let reqs = rt
                .take_all_data()
                .into_iter()
                .filter(|(to, data)| {
                    let mut data = &data[..];
                    *to != suspect
                        && matches!(
                            BadCodec.decode_header(&mut data).unwrap().message,
                            Message::PingReq { target, probe_number } if target == suspect && probe_number == n
                        )
                })
                .count();
            assert_eq!(reqs, foca.config.num_indirect_probes.get());
            // Nobody answered by the end: we accuse it, like a failed probe of our own.
            end_prompt(&mut foca, suspect, n);
            assert_eq!(foca.take_accusations(), vec![(suspect, 0)]);
            assert_eq!(foca.local_health(), 1);
            assert_eq!(foca.probe_failures(), 1);
            // The round's probe went on untouched.
            assert_eq!(foca.probe().target(), Some(&round));
        }
        assert_eq!(beside > 0, prompt > 0);
    }
}

/// Our next probe; the round's target answers it.
fn tick(
    foca: &mut Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>,
    rt: &mut AccumulatingRuntime<ID>,
) {
    let (round, _, _) = start_probe(foca, rt);
    let n = foca.probe().probe_number();
    let inc = foca.members.get(&round).map_or(0, |m| m.incarnation());
    foca.handle_data(&ack(round, n, inc), &mut *rt).unwrap();
    fail_probe(foca, rt, round);
}

/// Makes `suspect` suspect at `inc` and runs our next probe: the prompt probe's number if
/// it went beside the round (not when the round happened to probe the suspect itself).
fn prompt_probing(
    foca: &mut Foca<ID, BadCodec, SmallRng, NoCustomBroadcast>,
    rt: &mut AccumulatingRuntime<ID>,
    suspect: ID,
    inc: Incarnation,
) -> Option<u8> {
    foca.apply(Member::new(suspect, inc, State::Suspect), &mut *rt)
        .unwrap();
    rt.clear();
    tick(foca, rt);
    prompt_timers(rt, suspect).map(|(_, _, n)| n)
}

#[test]
fn a_suspect_that_answers_the_prompt_probe_is_not_accused() {
    let mut checked = 0;
    for suspect in (2..=8).map(ID::new) {
        let mut lg = lifeguard();
        lg.prompt_probers = 8;
        let (mut foca, mut rt) = foca_with(8, Some(lg));
        foca.set_now(Duration::from_secs(30));
        let Some(n) = prompt_probing(&mut foca, &mut rt, suspect, 0) else {
            continue;
        };
        foca.handle_data(&ack(suspect, n, 0), &mut rt).unwrap();
        // The answer ends the probe: its leftover timer does nothing.
        end_prompt(&mut foca, suspect, n);
        assert!(foca.take_accusations().is_empty());
        assert_eq!(foca.probe_failures(), 0);
        // A later suspicion (it refuted, and is suspect again) is probed anew,
        // and the first probe's timer does not end the second.
        let Some(m) = prompt_probing(&mut foca, &mut rt, suspect, 1) else {
            continue;
        };
        assert_ne!(m, n);
        end_prompt(&mut foca, suspect, n);
        assert!(foca.take_accusations().is_empty());
        end_prompt(&mut foca, suspect, m);
        assert_eq!(foca.take_accusations(), vec![(suspect, 1)]);
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn the_prompt_probe_never_shares_the_rounds_number() {
    let mut checked = 0;
    for suspect in (2..=8).map(ID::new) {
        let mut lg = lifeguard();
        lg.prompt_probers = 8;
        let (mut foca, mut rt) = foca_with(8, Some(lg));
        foca.set_now(Duration::from_secs(30));
        // The prompt probe's counter right behind the round's next number.
        let next_round = foca.probe().probe_number().wrapping_add(1);
        foca.prompt = Probe::numbered_from(Vec::new(), next_round.wrapping_sub(1));
        foca.apply(Member::new(suspect, 0, State::Suspect), &mut rt)
            .unwrap();
        rt.clear();
        start_probe(&mut foca, &mut rt);
        let Some((_, _, n)) = prompt_timers(&mut rt, suspect) else {
            // The round probed the suspect itself.
            continue;
        };
        let r = foca.probe().probe_number();
        assert_eq!(r, next_round);
        assert_ne!(n, r);
        // The suspect answering the round's number did not answer our prompt probe.
        foca.handle_data(&ack(suspect, r, 0), &mut rt).unwrap();
        end_prompt(&mut foca, suspect, n);
        assert_eq!(foca.take_accusations(), vec![(suspect, 0)]);
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn a_prompt_probe_of_a_member_gone_meanwhile_says_nothing_about_us() {
    let mut checked = 0;
    for suspect in (2..=8).map(ID::new) {
        let mut lg = lifeguard();
        lg.prompt_probers = 8;
        let (mut foca, mut rt) = foca_with(8, Some(lg));
        foca.set_now(Duration::from_secs(30));
        let Some(n) = prompt_probing(&mut foca, &mut rt, suspect, 0) else {
            continue;
        };
        // Declared down by the cluster while our probe ran.
        foca.apply(Member::new(suspect, 0, State::Down), &mut rt)
            .unwrap();
        end_prompt(&mut foca, suspect, n);
        assert_eq!(foca.local_health(), 0);
        assert_eq!(foca.probe_failures(), 0);
        assert!(foca.take_accusations().is_empty());
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn a_second_suspect_waits_for_the_next_probe_while_one_prompt_probe_is_under_way() {
    let mut lg = lifeguard();
    lg.prompt_probers = 8;
    let (mut foca, mut rt) = foca_with(8, Some(lg));
    foca.set_now(Duration::from_secs(30));
    foca.apply(Member::new(ID::new(4), 0, State::Suspect), &mut rt)
        .unwrap();
    foca.apply(Member::new(ID::new(6), 0, State::Suspect), &mut rt)
        .unwrap();
    // One of them at our next probe, the other at the probe after (or by the round, if it
    // happens to reach it first): never two prompt probes at once.
    let mut probed = Vec::new();
    for _ in 0..4 {
        rt.clear();
        let (round, _, _) = start_probe(&mut foca, &mut rt);
        let timers = scheduled(&mut rt);
        let n = foca.probe().probe_number();
        foca.handle_data(&ack(round, n, 0), &mut rt).unwrap();
        fail_probe(&mut foca, &mut rt, round);
        if [ID::new(4), ID::new(6)].contains(&round) {
            probed.push(round);
        }
        let now: Vec<_> = [4, 6]
            .map(ID::new)
            .into_iter()
            .filter_map(|id| prompt_timers_in(&timers, id).map(|(_, _, n)| (id, n)))
            .collect();
        assert!(now.len() <= 1, "one prompt probe at a time");
        for (id, n) in now {
            probed.push(id);
            end_prompt(&mut foca, id, n);
        }
    }
    probed.sort();
    probed.dedup();
    assert_eq!(probed, vec![ID::new(4), ID::new(6)]);
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
