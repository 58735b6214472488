//! The node's side of Lifeguard: passes foca's own accusations to the cluster and the
//! cluster's accusations to foca (see `core::lifeguard`).
//!
//! A child module of `core::node` (it reaches the node's fields). Must not decide anything
//! about suspicion itself: foca keeps the suspicions, their timeouts and local health.

use super::Node;
use crate::lifeguard::Accusation;
use crate::time::Time;

impl Node {
    /// After every input: spreads the suspicions this node raised itself (its own probe
    /// failed) as accusations, with the subject's generation and our own local health, and
    /// hands received ones to foca as confirmations: only those about the subject's current
    /// generation (an accusation of a member's former life says nothing about the renewed
    /// one) from accusers that were healthy when they accused.
    pub(super) fn lifeguard_exchange(&mut self, now: Time) {
        let own = self.foca.take_accusations();
        let health = self.foca.local_health();
        for (id, incarnation) in own {
            let a = Accusation {
                subject: id.name().to_string(),
                incarnation,
                accuser: self.cfg.name.clone(),
                generation: Some(id.generation()),
                health,
            };
            // Only fails if custom broadcasts were refused: nothing to spread then.
            let _ = self.foca.add_broadcast(&a.encode());
        }
        let received = self.accusations.lock().drain();
        for a in received {
            if !a.from_healthy_accuser() {
                continue;
            }
            let subject = self.truth.get(&a.subject).map(|m| m.id.clone());
            let accuser = self.truth.get(&a.accuser).map(|m| m.id.clone());
            let (Some(subject), Some(accuser)) = (subject, accuser) else {
                continue;
            };
            if a.generation.is_some_and(|g| g != subject.generation()) {
                continue;
            }
            self.swim(now, |foca, rt| {
                foca.confirm_suspicion(&subject, a.incarnation, &accuser, rt);
                Ok(())
            });
        }
    }
}

impl Node {
    /// Lifeguard's local health score (0 = healthy; probes stretch by score + 1).
    pub fn local_health(&self) -> u8 {
        self.foca.local_health()
    }

    /// Probes of this node that failed (no direct nor indirect ack) since it started.
    pub fn probe_failures(&self) -> u64 {
        self.foca.probe_failures()
    }

    /// Members SWIM holds active (alive or suspect), this node excluded.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }
}
