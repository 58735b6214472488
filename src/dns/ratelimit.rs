//! Response rate limiting of the DNS interface's UDP answers to other hosts.
//!
//! With `listen_remote`, the DNS interface answers any host over UDP, where the source
//! address is not verified: a spoofed query makes the agent send its answer (up to 1,232
//! bytes for a query of a few dozen) to a victim. As BIND's response rate limiting does, each
//! source address gets at most `RATE_PER_SEC` answers a second (bursts of `BURST`); past it,
//! one query in `SLIP` gets a truncated answer (header and question, no larger than the
//! query: a real client retries over TCP, which a spoofer cannot complete) and the others
//! none. Loopback sources are not limited (local apps; nothing reflects off them).
//!
//! Owns the table of sources (at most `MAX_SOURCES`; sources quiet for long enough to have
//! refilled are forgotten first; when it is still full, a new source gets only truncated
//! answers). Must not read the view or the node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Answers per second per source address.
pub const RATE_PER_SEC: f64 = 20.0;
/// Answers a source may get at once.
pub const BURST: f64 = 40.0;
/// Past the limit, one query in this many gets a truncated answer.
pub const SLIP: u32 = 2;
/// Sources tracked.
pub const MAX_SOURCES: usize = 4096;

/// What to do with one UDP query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    /// A truncated answer (TC set, the question only).
    Truncate,
    Drop,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    over: u32,
}

#[derive(Debug, Default)]
pub struct RateLimit {
    sources: HashMap<IpAddr, Bucket>,
}

impl RateLimit {
    /// The verdict for a query from `ip` at `now`.
    pub fn check(&mut self, now: Instant, ip: IpAddr) -> Verdict {
        if ip.is_loopback() {
            return Verdict::Answer;
        }
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            // Forget the sources whose bucket has refilled (quiet for BURST / RATE seconds).
            self.sources.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * RATE_PER_SEC < BURST
            });
            if self.sources.len() >= MAX_SOURCES {
                return Verdict::Truncate;
            }
        }
        let b = self.sources.entry(ip).or_insert(Bucket {
            tokens: BURST,
            at: now,
            over: 0,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * RATE_PER_SEC).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.over = 0;
            return Verdict::Answer;
        }
        b.over = b.over.wrapping_add(1);
        if b.over % SLIP == 1 {
            Verdict::Truncate
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_past_its_rate_gets_truncated_answers_or_none() {
        let mut r = RateLimit::default();
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..100).map(|_| r.check(t0, ip)).collect();
        let answered = verdicts.iter().filter(|v| **v == Verdict::Answer).count();
        let truncated = verdicts.iter().filter(|v| **v == Verdict::Truncate).count();
        assert_eq!(answered, BURST as usize);
        assert_eq!(truncated, 30);
        // Another source is not affected; loopback is never limited.
        assert_eq!(r.check(t0, "10.0.0.2".parse().unwrap()), Verdict::Answer);
        for _ in 0..1000 {
            assert_eq!(r.check(t0, "127.0.0.1".parse().unwrap()), Verdict::Answer);
        }
        // A second later, RATE_PER_SEC more.
        let t1 = t0 + Duration::from_secs(1);
        let again = (0..100)
            .filter(|_| r.check(t1, ip) == Verdict::Answer)
            .count();
        assert_eq!(again, RATE_PER_SEC as usize);
    }

    /// What a limited source gets: the TC bit and the question, never more bytes than it sent.
    #[test]
    fn a_truncated_answer_is_no_larger_than_the_query() {
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::{Name, RecordType};
        let mut q = Message::new(7, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("web.service.shoal.").unwrap(),
            RecordType::SRV,
        ));
        let bytes = q.to_vec().unwrap();
        let out = super::super::truncated_only(&bytes).expect("an answer");
        assert!(out.len() <= bytes.len());
        let m = Message::from_vec(&out).unwrap();
        assert!(m.metadata.truncation);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.id, 7);
        assert!(super::super::truncated_only(b"junk").is_none());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = RateLimit::default();
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 100) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let v = r.check(t0, ip);
            if (i as usize) < MAX_SOURCES {
                assert_eq!(v, Verdict::Answer);
            } else {
                assert_eq!(v, Verdict::Truncate, "a new source past the table");
            }
        }
        assert_eq!(r.sources.len(), MAX_SOURCES);
        // Once they have refilled, room is made.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(r.check(later, "11.0.0.1".parse().unwrap()), Verdict::Answer);
    }
}
