//! A tiny deterministic network for the core's unit tests: nodes exchange datagrams with a
//! fixed 1 ms latency (or one per link), each node is woken at its `poll_timeout`, and nodes can be cut off or crashed.
//! Test-only; the simulator (`shoal_sim`) is the full-featured driver.

use crate::{Node, NodeConfig, NodeMeta, Profile, Time};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::SocketAddr;

enum Ev {
    /// Node `i` asked to be woken now (`Node::poll_timeout`).
    Wake(usize),
    Deliver(usize, SocketAddr, Vec<u8>),
}

pub(crate) struct TestNet {
    pub nodes: Vec<Node>,
    pub crashed: BTreeSet<usize>,
    /// Nodes that can neither send nor receive.
    pub cut: BTreeSet<usize>,
    /// One-way links that drop everything: `(from, to)`.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Lossy receivers: node -> (k, counter): it gets about one datagram in k sent to it.
    pub keep_one_in: std::collections::BTreeMap<usize, (u32, u32)>,
    queue: BinaryHeap<Reverse<(Time, u64, usize)>>,
    /// The earliest wake-up queued for each node.
    wake: Vec<Option<Time>>,
    evs: Vec<Option<Ev>>,
    seq: u64,
    pub now: Time,
    /// Every `Local` event: (when, node, what), for debugging and assertions.
    pub local_log: Vec<(Time, usize, crate::LocalEvent)>,
    /// User events and queries delivered, by node (`core::fleet`).
    pub user_log: Vec<(Time, usize, crate::UserEventView)>,
    pub query_log: Vec<(Time, usize, crate::QueryView)>,
    /// When set, every datagram delivered is recorded here: (from node, to node, bytes).
    pub tap: Option<Vec<(usize, usize, Vec<u8>)>>,
    /// Every member event that served a member `down`: (when, observer, member name).
    pub down_log: Vec<(Time, usize, String)>,
    /// Every guard transition event: (when, node, transition), as the watch stream shows it.
    pub guard_log: Vec<(Time, usize, crate::GuardTransition)>,
    /// Every member event with a status other than alive: (when, observer, member, status).
    pub status_log: Vec<(Time, usize, String, crate::ServedStatus)>,
    /// `handle_timeout` calls per node (wake-ups at its `poll_timeout`).
    pub wakes: Vec<u64>,
    /// One-way latency in ms from node to node (1 ms when unset).
    pub latency: Option<fn(usize, usize) -> u64>,
    /// Every member event: (when, observer, member, status, address, generation).
    pub member_log: Vec<(Time, usize, String, crate::ServedStatus, SocketAddr, u64)>,
    /// Datagrams sent to addresses no node has: (when, from node, to, bytes).
    pub strays: Vec<(Time, usize, SocketAddr, usize)>,
}

pub(crate) fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20000 + i as u16))
}

pub(crate) fn config(i: usize) -> NodeConfig {
    NodeConfig {
        name: format!("n{i}"),
        advertise: addr(i),
        cluster_label: String::new(),
        timings: Profile::Local.timings(),
        seeds: if i == 0 { vec![] } else { vec![addr(0)] },
        guard: Default::default(),
        track_suspects: true,
        outlier: Default::default(),
        fleet: Default::default(),
    }
}

impl TestNet {
    pub(crate) fn new(n: usize) -> Self {
        Self::with_config(n, |_, _| {})
    }

    /// A net whose node configs are adjusted by `f(index, config)` before the nodes start.
    pub(crate) fn with_config(n: usize, f: impl Fn(usize, &mut NodeConfig)) -> Self {
        Self::with_config_and_trust(n, f, |_| None)
    }

    /// A net whose node `i` protects its datagrams with `trust(i)` (`None`: insecure).
    pub(crate) fn with_trust(
        n: usize,
        trust: impl Fn(usize) -> Option<crate::trust::TrustConfig>,
    ) -> Self {
        Self::with_config_and_trust(n, |_, _| {}, trust)
    }

    pub(crate) fn with_config_and_trust(
        n: usize,
        f: impl Fn(usize, &mut NodeConfig),
        trust: impl Fn(usize) -> Option<crate::trust::TrustConfig>,
    ) -> Self {
        Self::with_setup(n, f, |i, node| {
            if let Some(t) = trust(i) {
                node.set_trust(t).unwrap();
            }
        })
    }

    /// A net whose node `i` is set up by `setup(i, node)` before it starts.
    pub(crate) fn with_setup(
        n: usize,
        f: impl Fn(usize, &mut NodeConfig),
        setup: impl Fn(usize, &mut Node),
    ) -> Self {
        let mut net = TestNet {
            nodes: Vec::new(),
            crashed: BTreeSet::new(),
            cut: BTreeSet::new(),
            blocked: BTreeSet::new(),
            keep_one_in: Default::default(),
            queue: BinaryHeap::new(),
            wake: vec![None; n],
            evs: Vec::new(),
            seq: 0,
            now: Time(0),
            local_log: Vec::new(),
            user_log: Vec::new(),
            query_log: Vec::new(),
            tap: None,
            down_log: Vec::new(),
            guard_log: Vec::new(),
            status_log: Vec::new(),
            wakes: vec![0; n],
            latency: None,
            strays: Vec::new(),
            member_log: Vec::new(),
        };
        for i in 0..n {
            let mut cfg = config(i);
            f(i, &mut cfg);
            let mut node = Node::new(cfg, 1, NodeMeta::default(), i as u64, Time(0)).unwrap();
            setup(i, &mut node);
            net.nodes.push(node);
        }
        for i in 0..n {
            net.nodes[i].start(Time(0));
            net.flush(i);
        }
        net
    }

    fn push(&mut self, at: Time, node: usize, ev: Ev) {
        self.seq += 1;
        self.evs.push(Some(ev));
        self.queue.push(Reverse((at, self.seq, self.evs.len() - 1)));
        let _ = node;
    }

    pub(crate) fn index_of(&self, a: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.config().advertise == a)
    }

    pub(crate) fn flush(&mut self, i: usize) {
        if self.wake.len() < self.nodes.len() {
            self.wake.resize(self.nodes.len(), None);
        }
        if let Some(at) = self.nodes[i].poll_timeout() {
            if self.wake[i].is_none_or(|w| at < w) {
                self.wake[i] = Some(at);
                self.push(at, i, Ev::Wake(i));
            }
        }
        let from = self.nodes[i].config().advertise;
        while let Some(tx) = self.nodes[i].poll_transmit() {
            if self.cut.contains(&i) {
                continue;
            }
            if let Some(j) = self.index_of(tx.dst) {
                if self.blocked.contains(&(i, j)) {
                    continue;
                }
                if let Some((k, c)) = self.keep_one_in.get_mut(&j) {
                    *c = c.wrapping_add(1);
                    // A fixed scramble of the count: which datagrams get through
                    // does not follow the protocol's own rhythm.
                    if (c.wrapping_mul(2_654_435_761) >> 13) % (*k).max(1) != 0 {
                        continue;
                    }
                }
                let at = Time(self.now.0 + self.latency.map_or(1, |l| l(i, j)));
                if let Some(tap) = &mut self.tap {
                    tap.push((i, j, tx.data.clone()));
                }
                self.push(at, j, Ev::Deliver(j, from, tx.data));
            } else {
                self.strays.push((self.now, i, tx.dst, tx.data.len()));
            }
        }
        while let Some(ev) = self.nodes[i].poll_event() {
            if let crate::EventKind::Member { member, .. } = &ev.kind {
                let m = &member;
                let e = (self.now, i, m.name.clone(), m.status, m.addr, m.generation);
                self.member_log.push(e);
                if member.status != crate::ServedStatus::Alive {
                    let m = (self.now, i, member.name.clone(), member.status);
                    self.status_log.push(m);
                }
            }
            match &ev.kind {
                crate::EventKind::Local(l) => self.local_log.push((self.now, i, l.clone())),
                crate::EventKind::UserEvent(e) => self.user_log.push((self.now, i, e.clone())),
                crate::EventKind::Query(q) => self.query_log.push((self.now, i, q.clone())),
                crate::EventKind::Guard(t) => self.guard_log.push((self.now, i, t.clone())),
                crate::EventKind::Member { member, .. }
                    if member.status == crate::ServedStatus::Down =>
                {
                    self.down_log.push((self.now, i, member.name.clone()));
                }
                _ => {}
            }
        }
    }

    pub(crate) fn run_until(&mut self, until: Time) {
        while let Some(Reverse((at, _, slot))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let Some(ev) = self.evs[slot].take() else {
                continue;
            };
            match ev {
                Ev::Wake(i) => {
                    if self.wake[i] == Some(at) {
                        self.wake[i] = None;
                    }
                    if self.crashed.contains(&i) {
                        continue;
                    }
                    if self.wakes.len() < self.nodes.len() {
                        self.wakes.resize(self.nodes.len(), 0);
                    }
                    self.wakes[i] += 1;
                    self.nodes[i].handle_timeout(at);
                    self.flush(i);
                }
                Ev::Deliver(i, from, data) => {
                    if self.crashed.contains(&i) || self.cut.contains(&i) {
                        continue;
                    }
                    self.nodes[i].handle_datagram(at, from, &data);
                    self.flush(i);
                }
            }
        }
        self.now = until;
    }

    pub(crate) fn run_for_ms(&mut self, ms: u64) {
        let until = Time(self.now.0 + ms);
        self.run_until(until);
    }

    /// Runs until `pred` holds, checking every 10 ms, for at most `max_ms`. Returns whether
    /// it held.
    pub(crate) fn run_until_pred(
        &mut self,
        max_ms: u64,
        mut pred: impl FnMut(&TestNet) -> bool,
    ) -> bool {
        let end = self.now.0 + max_ms;
        while self.now.0 < end {
            if pred(self) {
                return true;
            }
            self.run_for_ms(10);
        }
        pred(self)
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub(crate) fn partition(&mut self, side: &[usize]) {
        for &a in side {
            for b in 0..self.nodes.len() {
                if !side.contains(&b) {
                    self.blocked.insert((a, b));
                    self.blocked.insert((b, a));
                }
            }
        }
    }

    /// Lifts every cut.
    pub(crate) fn heal(&mut self) {
        self.blocked.clear();
        self.cut.clear();
    }

    pub(crate) fn call(&mut self, i: usize, f: impl FnOnce(&mut Node, Time)) {
        let now = self.now;
        f(&mut self.nodes[i], now);
        self.flush(i);
    }
}
