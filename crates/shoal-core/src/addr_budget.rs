//! Per-address budgets: how many datagrams of one kind this node sends to one address, or
//! answers for one requester, per window.
//!
//! Owns [`AddrBudget`], a bounded table of (address, window start, count). It bounds what a
//! key holder can make this node send elsewhere (discovery announces toward addresses it
//! wrote into records: a reflector) and what one requester can draw (answers to `Want`).
//! Must not decide what to send (the node does) and must stay sans-IO: time comes in as
//! arguments.

use crate::time::Time;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Addresses a budget tracks at once.
pub(crate) const MAX_ADDRS: usize = 1_024;

/// Datagrams per address per window, over a bounded table of addresses.
#[derive(Clone, Debug)]
pub(crate) struct AddrBudget {
    per_window: u32,
    window: Duration,
    max_addrs: usize,
    used: BTreeMap<SocketAddr, (Time, u32)>,
}

impl AddrBudget {
    /// `per_window` datagrams to (or for) one address per `window`, at most `max_addrs`
    /// addresses tracked at once (past it, while every tracked window is still open, the
    /// address whose window opened first is forgotten: the table cannot grow, and a sender
    /// spoofing many addresses cannot lock real ones out; it buys at most one more datagram
    /// toward an address for every `max_addrs` addresses it cycles through).
    pub(crate) fn new(per_window: u32, window: Duration, max_addrs: usize) -> AddrBudget {
        AddrBudget {
            per_window,
            window,
            max_addrs: max_addrs.max(1),
            used: BTreeMap::new(),
        }
    }

    /// Takes one datagram for `addr` at `now`: whether it may be sent.
    pub(crate) fn take(&mut self, now: Time, addr: SocketAddr) -> bool {
        let window = self.window;
        let open = |start: Time| now >= start && now.since(start) < window;
        if let Some((start, n)) = self.used.get_mut(&addr) {
            if !open(*start) {
                *start = now;
                *n = 0;
            }
            if *n >= self.per_window {
                return false;
            }
            *n += 1;
            return true;
        }
        if self.used.len() >= self.max_addrs {
            self.used.retain(|_, (start, _)| open(*start));
            if self.used.len() >= self.max_addrs {
                let oldest = self
                    .used
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    self.used.remove(&oldest);
                }
            }
        }
        if self.per_window == 0 {
            return false;
        }
        self.used.insert(addr, (now, 1));
        true
    }

    #[cfg(test)]
    /// Addresses tracked.
    pub(crate) fn len(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    #[test]
    fn per_address_per_window_and_bounded() {
        let mut b = AddrBudget::new(2, Duration::from_secs(1), 3);
        let t = Time(1_000);
        assert!(b.take(t, a(1)) && b.take(t, a(1)));
        assert!(!b.take(t, a(1)), "third in the window");
        assert!(b.take(t, a(2)), "another address has its own budget");
        assert!(b.take(t, a(3)));
        // Full of open windows: the oldest window goes, so a new address is not locked out.
        assert!(
            b.take(Time(1_500), a(4)),
            "a new address despite a full table"
        );
        assert_eq!(b.len(), 3);
        assert!(b.take(Time(2_000), a(1)), "a new window");
        // Once windows close, their room is reused.
        assert!(b.take(Time(3_100), a(4)));
        assert!(b.len() <= 3);
    }
}
