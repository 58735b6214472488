//! The node's side of Lifeguard: passes foca's own accusations to the cluster and the
//! cluster's accusations to foca (see `core::lifeguard`).
//!
//! A child module of `core::node` (it reaches the node's fields). Must not decide anything
//! about suspicion itself: foca keeps the suspicions, their timeouts and local health.

use super::Node;
use crate::identity::NodeId;
use crate::lifeguard::Accusation;
use crate::time::Time;

impl Node {
    /// After every input: spreads the suspicions this node raised itself (its own probe
    /// failed) as accusations, with the subject's generation and our own local health (the
    /// inbox keeps back those that can no longer change anyone's timeout), and
    /// hands received ones to foca as confirmations: only those about the subject's current
    /// generation (an accusation of a member's former life says nothing about the renewed
    /// one) from accusers that were healthy when they accused.
    pub(super) fn lifeguard_exchange(&mut self, now: Time) {
        let own = self.foca.take_accusations();
        let health = self.foca.local_health();
        for (id, incarnation) in own {
            if self.truth.get(id.name()).is_some() {
                self.causes
                    .probe_failed(id.name(), id.generation(), incarnation);
            }
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
        let received = self.foca.broadcast_handler_mut().accusations.drain();
        for a in received {
            let subject = self.truth.get(&a.subject).map(|m| m.id.clone());
            let accuser = self.truth.get(&a.accuser).map(|m| m.id.clone());
            let (Some(subject), Some(accuser)) = (subject, accuser) else {
                continue;
            };
            if !counts(&a, &subject) {
                continue;
            }
            let mut new = false;
            self.swim(now, |foca, rt| {
                new = foca.confirm_suspicion(&subject, a.incarnation, &accuser, rt);
                Ok(())
            });
            if new {
                // An independent confirmation: the cause of its suspicion names the accuser.
                self.causes.confirmed(
                    subject.name(),
                    subject.generation(),
                    a.incarnation,
                    accuser.name(),
                );
            }
        }
    }
}

/// Whether a received accusation confirms a suspicion of `subject` (the member as we know
/// it): about its current generation (or from a version-1 accuser, which does not say) and
/// from an accuser that was healthy when it accused.
fn counts(a: &Accusation, subject: &NodeId) -> bool {
    a.from_healthy_accuser() && a.generation.is_none_or(|g| g == subject.generation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_accusations_of_the_current_generation_by_healthy_accusers_count() {
        let subject = NodeId::new("n1", "127.0.0.1:7946".parse().unwrap(), 7);
        let a = |generation, health| Accusation {
            subject: "n1".into(),
            incarnation: 0,
            accuser: "n2".into(),
            generation,
            health,
        };
        assert!(counts(&a(Some(7), 0), &subject));
        assert!(counts(&a(Some(7), 1), &subject));
        assert!(counts(&a(None, 0), &subject), "version 1: not checked");
        assert!(!counts(&a(Some(6), 0), &subject), "its former life");
        assert!(!counts(&a(Some(7), 2), &subject), "an unhealthy accuser");
    }
}
