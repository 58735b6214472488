//! Recent drops by sender: which address sent datagrams this node refused, why, how many and
//! when, so that a misconfigured host (another key, label or version, a skewed clock) is named
//! within seconds instead of only counted.
//!
//! Owns `DropTable` (at most `MAX_SENDERS` entries, one per sender and reason; a new pair
//! evicts the one heard from longest ago, so a flood from many spoofed addresses cannot grow
//! it) and `DropReason` with its words. The counters themselves stay in `Stats`. It must not
//! rate-limit or log (the agent does, from this table) and must stay sans-IO.

use crate::keyring::{KeyId, Keyring};
use crate::time::Time;
use crate::trust::TrustDrop;
use crate::wire::{WireError, ENVELOPE_VERSIONS};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Entries kept (sender and reason pairs).
pub(crate) const MAX_SENDERS: usize = 64;
/// Longest detail kept (a label is at most 255 bytes; shown escaped).
const MAX_DETAIL: usize = 160;

/// Why a datagram was refused, as an operator reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Sealed under a key this node does not hold, or forged, or altered.
    WrongKey,
    /// A plaintext datagram where only sealed ones are accepted.
    Plaintext,
    /// The cluster label differs.
    WrongLabel,
    /// The envelope version is not one this release reads.
    UnsupportedVersion,
    /// An authentic operator command stamped further from our clock than the replay window
    /// (gossip is accepted whatever its timestamp: `trust::TrustStats::skewed`).
    ClockSkew,
    /// A sealed datagram seen before (replay protection).
    Replay,
    /// Not a shoal datagram (wrong magic).
    BadMagic,
    /// Larger than `MAX_DATAGRAM`.
    Oversized,
    /// Shorter than its header says.
    Truncated,
    /// Envelope flags this release does not know.
    BadFlags,
    /// A datagram kind this release does not know.
    BadKind,
    /// An authentic datagram whose body did not decode.
    Decode,
    /// Sealed under a key this node retired (`keys remove`).
    RetiredKey,
}

impl DropReason {
    /// The reason as written in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::WrongKey => "wrong_key",
            DropReason::Plaintext => "plaintext",
            DropReason::WrongLabel => "wrong_label",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::ClockSkew => "clock_skew",
            DropReason::Replay => "replay",
            DropReason::BadMagic => "bad_magic",
            DropReason::Oversized => "oversized",
            DropReason::Truncated => "truncated",
            DropReason::BadFlags => "bad_flags",
            DropReason::BadKind => "bad_kind",
            DropReason::Decode => "decode",
            DropReason::RetiredKey => "retired_key",
        }
    }

    /// What it means and what to check, in words.
    pub fn explain(self) -> &'static str {
        match self {
            DropReason::WrongKey => "cannot authenticate (another cluster key, or forged)",
            DropReason::Plaintext => {
                "plaintext datagram refused: the sender runs without encryption (--insecure?) \
                 and this agent requires it"
            }
            DropReason::WrongLabel => {
                "wrong cluster label: the sender belongs to another cluster (check \
                 cluster_label)"
            }
            DropReason::UnsupportedVersion => {
                "unsupported envelope version: the sender runs a release this one cannot read \
                 (upgrade one release at a time)"
            }
            DropReason::ClockSkew => {
                "clock skew: an authentic operator command stamped too far from our clock \
                 (check NTP on both hosts, or run it from another agent)"
            }
            DropReason::Replay => "replay: an authentic datagram seen before",
            DropReason::BadMagic => "not a shoal datagram (another program on this port?)",
            DropReason::Oversized => "datagram larger than the limit",
            DropReason::Truncated => "datagram too short or truncated",
            DropReason::BadFlags => "unsupported envelope flags",
            DropReason::BadKind => "unknown message kind",
            DropReason::Decode => "an authentic datagram whose body did not decode",
            DropReason::RetiredKey => {
                "sealed with a key removed from the keyring (keys remove): the sender missed \
                 the rotation or is a former member; give it the current key"
            }
        }
    }

    pub(crate) fn of_trust(e: &TrustDrop) -> DropReason {
        match e {
            TrustDrop::Wire(w) => DropReason::of_wire(*w),
            TrustDrop::Auth => DropReason::WrongKey,
            TrustDrop::Plaintext => DropReason::Plaintext,
            TrustDrop::Replay => DropReason::Replay,
            TrustDrop::Stale => DropReason::ClockSkew,
            TrustDrop::Retired => DropReason::RetiredKey,
        }
    }

    pub(crate) fn of_wire(e: WireError) -> DropReason {
        match e {
            WireError::Oversized => DropReason::Oversized,
            WireError::Truncated => DropReason::Truncated,
            WireError::BadMagic => DropReason::BadMagic,
            WireError::BadVersion(_) => DropReason::UnsupportedVersion,
            WireError::BadFlags => DropReason::BadFlags,
            WireError::WrongLabel => DropReason::WrongLabel,
            WireError::BadKind => DropReason::BadKind,
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Datagrams from one sender refused for one reason (`/v1/stats`' `recent_drops`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropRecord {
    /// The sender.
    pub from: SocketAddr,
    /// Why it was dropped.
    pub reason: DropReason,
    /// Refused since the entry was created.
    pub count: u64,
    /// When the first and the last were refused (agent clock, ms).
    pub first_ms: u64,
    /// When the last one was dropped (driver clock, ms).
    pub at_ms: u64,
    /// What the first one said, where it tells more (their label, version or key id).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The last `MAX_SENDERS` (sender, reason) pairs refused.
#[derive(Clone, Debug, Default)]
pub struct DropTable {
    entries: Vec<DropRecord>,
    /// Entries evicted to make room (a flood of senders shows here).
    evicted: u64,
}

impl DropTable {
    /// Counts one refused datagram. `detail` is called only for a new entry.
    pub fn record(
        &mut self,
        now: Time,
        from: SocketAddr,
        reason: DropReason,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.from == from && e.reason == reason)
        {
            e.count = e.count.saturating_add(1);
            e.at_ms = now.as_millis();
            return;
        }
        if self.entries.len() >= MAX_SENDERS {
            if let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.at_ms)
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(oldest);
                self.evicted += 1;
            }
        }
        let mut d = detail();
        if d.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !d.is_char_boundary(cut) {
                cut -= 1;
            }
            d.truncate(cut);
        }
        self.entries.push(DropRecord {
            from,
            reason,
            count: 1,
            first_ms: now.as_millis(),
            at_ms: now.as_millis(),
            detail: d,
        });
    }

    /// Every entry, the most recent first.
    pub fn recent(&self) -> Vec<DropRecord> {
        let mut v = self.entries.clone();
        v.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(a.from.cmp(&b.from)));
        v
    }

    /// Entries, in no particular order (cheap: for a driver scanning for news).
    pub fn entries(&self) -> &[DropRecord] {
        &self.entries
    }

    /// Entries evicted to stay within the bound.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// What a refused datagram says about itself, for the reasons where it tells the operator
/// more: the label it carried, its version, the key id it was sealed with.
pub(crate) fn detail(reason: DropReason, data: &[u8], ring: Option<&Keyring>) -> String {
    match reason {
        DropReason::WrongLabel => {
            let len = data.get(4).copied().unwrap_or(0) as usize;
            let theirs = data.get(5..5 + len).unwrap_or_default();
            format!("their label {:?}", String::from_utf8_lossy(theirs))
        }
        DropReason::UnsupportedVersion => match data.get(2) {
            Some(v) => format!(
                "their envelope version {v}, this release accepts {}..={} (docs/upgrades.md)",
                ENVELOPE_VERSIONS.start(),
                ENVELOPE_VERSIONS.end()
            ),
            None => String::new(),
        },
        DropReason::WrongKey | DropReason::RetiredKey => {
            let len = data.get(4).copied().unwrap_or(0) as usize;
            let at = 5 + len + 1;
            let Some(id) = data.get(at..at + 4) else {
                return String::new();
            };
            let id = KeyId(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
            if reason == DropReason::RetiredKey {
                return format!("sealed with key {id}, retired here by `keys remove`");
            }
            match ring {
                None => format!("sealed with key {id}; this agent has no key (--insecure)"),
                Some(r) if r.keys().iter().any(|k| k.id() == id) => {
                    format!("sealed with key {id}, which we hold: forged or altered")
                }
                Some(_) => format!("sealed with key {id}, not in our keyring"),
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_senders_keeps_the_table_bounded() {
        let mut t = DropTable::default();
        for i in 0..10_000u32 {
            let from = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946));
            t.record(Time(u64::from(i)), from, DropReason::WrongKey, String::new);
        }
        assert_eq!(t.entries().len(), MAX_SENDERS);
        assert_eq!(t.evicted(), 10_000 - MAX_SENDERS as u64);
        // The most recent senders stay.
        assert_eq!(t.recent()[0].at_ms, 9_999);
        assert!(t
            .recent()
            .iter()
            .all(|e| e.at_ms >= 10_000 - MAX_SENDERS as u64));
    }

    #[test]
    fn one_sender_and_reason_is_one_entry() {
        let mut t = DropTable::default();
        let from: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        for i in 0..5 {
            t.record(Time(i), from, DropReason::WrongLabel, || "x".into());
        }
        t.record(Time(9), from, DropReason::ClockSkew, String::new);
        let r = t.recent();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].reason, r[0].count), (DropReason::ClockSkew, 1));
        assert_eq!(
            (r[1].reason, r[1].count, r[1].first_ms, r[1].at_ms),
            (DropReason::WrongLabel, 5, 0, 4)
        );
    }

    #[test]
    fn the_detail_names_their_label_and_version() {
        let mut d = Vec::new();
        crate::wire::write_header(&mut d, "prod", crate::wire::Kind::Swim);
        assert_eq!(
            detail(DropReason::WrongLabel, &d, None),
            "their label \"prod\""
        );
        d[2] = 200;
        assert!(detail(DropReason::UnsupportedVersion, &d, None)
            .starts_with("their envelope version 200, this release accepts "));
        // Short or odd data: no panic, no detail.
        assert_eq!(detail(DropReason::WrongKey, &[1], None), "");
        assert_eq!(
            detail(DropReason::WrongLabel, &[], None),
            "their label \"\""
        );
    }
}
