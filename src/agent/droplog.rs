//! Log lines for refused datagrams, rate-limited: at most one line per sender and reason every
//! `PER_PAIR_EVERY`, at most `WINDOW_LINES` lines every `WINDOW` in all (the rest are counted
//! and the next line says how many were held back), with the reason, the sender and what the
//! datagram carried (their label, version or key id).
//!
//! Owns `DropLog`, which reads the core's table of recent drops (`Node::drops`) after an
//! input changed the drop counters. It decides nothing about the datagrams (the core refused
//! and counted them) and never logs per packet. Its own table is bounded (`MAX_TRACKED`).

use shoal_core::DropReason;
use shoal_core::DropTable;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::warn;

/// One line per sender and reason at most this often.
pub(crate) const PER_PAIR_EVERY: Duration = Duration::from_secs(15);
/// At most `WINDOW_LINES` drop lines per `WINDOW`, whatever the senders.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
pub(crate) const WINDOW_LINES: u32 = 10;
/// The core's table is read at most this often (while drops keep coming).
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// Pairs remembered (the core keeps 64; stale ones go first).
const MAX_TRACKED: usize = 256;

#[derive(Clone, Copy, Debug)]
struct Logged {
    at: Instant,
    /// The core entry's count when last logged, and its creation (a re-created entry
    /// starts counting again).
    count: u64,
    first_ms: u64,
}

/// One line to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DropLine {
    pub from: SocketAddr,
    pub reason: DropReason,
    /// Refused since the last line about this pair.
    pub new: u64,
    /// Refused since the core's entry was created.
    pub total: u64,
    pub detail: String,
    /// Lines held back by the global limit since the last line.
    pub suppressed: u64,
}

impl DropLine {
    pub(crate) fn log(&self) {
        let mut msg = format!(
            "dropped {} datagram{} from {}: {}",
            self.new,
            if self.new == 1 { "" } else { "s" },
            self.from,
            self.reason.explain()
        );
        if !self.detail.is_empty() {
            msg.push_str("; ");
            msg.push_str(&self.detail);
        }
        if self.suppressed > 0 {
            msg.push_str(&format!(
                " ({} more drop report{} held back by the log limit; see shoal info / GET /v1/stats)",
                self.suppressed,
                if self.suppressed == 1 { "" } else { "s" }
            ));
        }
        warn!(
            from = %self.from,
            reason = self.reason.as_str(),
            count = self.new,
            total = self.total,
            "{msg}"
        );
    }
}

#[derive(Debug, Default)]
pub(crate) struct DropLog {
    seen_total: u64,
    last_scan: Option<Instant>,
    logged: HashMap<(SocketAddr, DropReason), Logged>,
    window_start: Option<Instant>,
    window_lines: u32,
    suppressed: u64,
}

impl DropLog {
    /// The lines due now, given the node's drop total and table. Cheap when nothing was
    /// dropped since the last call.
    pub(crate) fn poll(&mut self, now: Instant, total: u64, table: &DropTable) -> Vec<DropLine> {
        if total == self.seen_total
            || self
                .last_scan
                .is_some_and(|t| now.duration_since(t) < SCAN_EVERY)
        {
            return Vec::new();
        }
        self.last_scan = Some(now);
        self.seen_total = total;
        let mut out = Vec::new();
        for e in table.entries() {
            let key = (e.from, e.reason);
            let prev = self.logged.get(&key).copied();
            let new = match prev {
                Some(p) if p.first_ms == e.first_ms => e.count.saturating_sub(p.count),
                _ => e.count,
            };
            if new == 0 || prev.is_some_and(|p| now.duration_since(p.at) < PER_PAIR_EVERY) {
                continue;
            }
            if self
                .window_start
                .is_none_or(|w| now.duration_since(w) >= WINDOW)
            {
                self.window_start = Some(now);
                self.window_lines = 0;
            }
            self.remember(
                key,
                Logged {
                    at: now,
                    count: e.count,
                    first_ms: e.first_ms,
                },
            );
            if self.window_lines >= WINDOW_LINES {
                self.suppressed += 1;
                continue;
            }
            self.window_lines += 1;
            out.push(DropLine {
                from: e.from,
                reason: e.reason,
                new,
                total: e.count,
                detail: e.detail.clone(),
                suppressed: std::mem::take(&mut self.suppressed),
            });
        }
        out
    }

    fn remember(&mut self, key: (SocketAddr, DropReason), l: Logged) {
        if self.logged.len() >= MAX_TRACKED && !self.logged.contains_key(&key) {
            let now = l.at;
            self.logged
                .retain(|_, p| now.duration_since(p.at) < PER_PAIR_EVERY);
            if self.logged.len() >= MAX_TRACKED {
                if let Some(oldest) = self
                    .logged
                    .iter()
                    .min_by_key(|(_, p)| p.at)
                    .map(|(k, _)| *k)
                {
                    self.logged.remove(&oldest);
                }
            }
        }
        self.logged.insert(key, l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Time;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946))
    }

    #[test]
    fn one_line_per_pair_per_period_with_the_count_in_between() {
        let t0 = Instant::now();
        let mut table = DropTable::default();
        let mut log = DropLog::default();
        let mut total = 0;
        let mut lines = Vec::new();
        // 100 datagrams a second from one sender for 40 s: lines at 0, 15 and 30 s.
        for ms in (0..40_000u64).step_by(10) {
            table.record(Time(ms), addr(1), DropReason::WrongKey, || "k".into());
            total += 1;
            lines.extend(log.poll(t0 + Duration::from_millis(ms), total, &table));
        }
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0].new, 1);
        assert_eq!(lines.iter().map(|l| l.new).sum::<u64>(), lines[2].total);
        assert!(lines.iter().all(|l| l.detail == "k" && l.suppressed == 0));
    }

    #[test]
    fn many_senders_are_capped_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut table = DropTable::default();
        let mut log = DropLog::default();
        for i in 0..50 {
            table.record(Time(0), addr(i), DropReason::WrongLabel, String::new);
        }
        let first = log.poll(t0, 50, &table);
        assert_eq!(first.len(), WINDOW_LINES as usize);
        // The next window: one line, saying how many were held back.
        table.record(Time(11_000), addr(999), DropReason::WrongLabel, String::new);
        let next = log.poll(t0 + WINDOW + Duration::from_secs(1), 51, &table);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].suppressed, 40);
        assert!(log.logged.len() <= MAX_TRACKED);
    }
}
