/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
extern crate alloc;
use alloc::vec::Vec;

use core::hash::BuildHasher;
use hashbrown::{DefaultHashBuilder, HashTable};

use rand::{
    RngExt,
    prelude::{IteratorRandom, SliceRandom},
};

/// State describes how a Foca instance perceives a member of the cluster.
///
/// This is part of the Suspicion Mechanism described in section 4.2 of the
/// original SWIM paper.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum State {
    /// Member is active.
    Alive,
    /// Member is active, but at least one cluster member
    /// suspects its down. For all purposes, a `Suspect` member
    /// is treated as if it were `Alive` until either it
    /// refutes the suspicion (becoming `Alive`) or fails to
    /// do so (being declared `Down`).
    Suspect,
    /// Confirmed Down.
    /// A member that reaches this state can't join the cluster
    /// with the same identity until the cluster forgets
    /// this knowledge.
    Down,
}

/// Incarnation is a member-controlled cluster-global number attached
/// to a member identity.
/// A member M's incarnation starts with zero and can only be incremented
/// by said member M when refuting suspicion.
pub type Incarnation = u16;

/// A Cluster Member. Also often called "cluster update".
///
/// A [`Member`] represents Foca's snapshot knowledge about an
/// [`crate::Identity`]. An individual cluster update is simply a
/// serialized Member which other Foca instances receive and use to
/// update their own cluster state representation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Member<T> {
    id: T,
    incarnation: Incarnation,
    state: State,
}

impl<T> Member<T> {
    /// Initializes a new member.
    ///
    /// `id` is an identity used to uniquely identify an individual
    /// cluster member (say, a primary key).
    pub const fn new(id: T, incarnation: Incarnation, state: State) -> Self {
        Self {
            id,
            incarnation,
            state,
        }
    }

    /// Shortcut for initializing a member as [`State::Alive`].
    pub fn alive(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Alive)
    }

    #[cfg(test)]
    pub(crate) fn suspect(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Suspect)
    }

    /// Shortcut for initializing a member as [`State::Down`].
    pub fn down(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Down)
    }

    /// Getter for the member's Incarnation
    pub const fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Getter for the member's State
    pub const fn state(&self) -> State {
        self.state
    }

    /// Getter for the member's identity
    pub const fn id(&self) -> &T {
        &self.id
    }

    pub(crate) const fn is_active(&self) -> bool {
        match self.state {
            State::Alive | State::Suspect => true,
            State::Down => false,
        }
    }

    pub(crate) const fn change_state(&mut self, incarnation: Incarnation, state: State) -> bool {
        if self.can_change(incarnation, state) {
            self.state = state;
            self.incarnation = incarnation;
            true
        } else {
            false
        }
    }

    const fn can_change(&self, other_incarnation: Incarnation, other: State) -> bool {
        // This implements the order of preference of the Suspicion subprotocol
        // outlined on section 4.2 of the paper.
        match self.state {
            State::Alive => match other {
                State::Alive => other_incarnation > self.incarnation,
                State::Suspect => other_incarnation >= self.incarnation,
                State::Down => true,
            },
            State::Suspect => match other {
                State::Alive | State::Suspect => other_incarnation > self.incarnation,
                State::Down => true,
            },
            State::Down => false,
        }
    }

    pub(crate) fn into_identity(self) -> T {
        self.id
    }
}

/// Below this many members, reservoir sampling over the whole list is
/// as cheap as random probing (shoal fork).
const PROBE_MIN_MEMBERS: usize = 32;

pub(crate) struct Members<T: crate::Identity> {
    pub(crate) inner: Vec<Member<T>>,
    cursor: usize,
    num_active: usize,
    // (shoal fork) Members in state Suspect, kept like `num_active`.
    num_suspect: usize,
    // (shoal fork) Lifeguard: a down notice about an older incarnation than
    // the one we know is stale (memberlist's rule) and is ignored.
    pub(crate) ignore_stale_down: bool,
    // (shoal fork) Positions in `inner`, hashed by the address of the
    // member there (4 bytes per member: the address is not copied).
    // Kept in sync on every push/swap/swap_remove and rebuilt after a
    // shuffle, so lookups by address are O(1).
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    // (shoal fork) Most members (active or down) the list holds: an
    // update about an unknown member past it is refused and counted.
    pub(crate) max_len: usize,
    pub(crate) refused: u64,
}

#[cfg(test)]
impl<T: crate::Identity> Members<T> {
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    /// Panics unless `index` maps exactly every member's address to
    /// its position.
    pub(crate) fn assert_index_consistent(&self) {
        assert_eq!(self.inner.len(), self.index.len(), "index size");
        for (pos, member) in self.inner.iter().enumerate() {
            assert_eq!(
                Some(pos),
                self.position_of(&member.id.addr()),
                "index entry for {:?}",
                member.id
            );
        }
        assert_eq!(
            self.inner
                .iter()
                .filter(|m| m.state == State::Suspect)
                .count(),
            self.num_suspect,
            "suspect count"
        );
        let mut positions: Vec<u32> = self.index.iter().copied().collect();
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(self.inner.len(), positions.len(), "distinct positions");
    }
}

impl<T> Members<T>
where
    T: PartialEq + Clone + crate::Identity,
{
    pub(crate) const fn num_active(&self) -> usize {
        self.num_active
    }

    /// (shoal fork) Members currently suspected.
    pub(crate) const fn num_suspect(&self) -> usize {
        self.num_suspect
    }

    /// (shoal fork) Room for `additional` more members. A batch at least
    /// as large as the list gets exactly that (a bulk transfer of thousands
    /// would double the list on the way and keep up to twice what it holds
    /// until a round of probes ends: one probe period per member, hours at
    /// 10,000); a smaller one grows it as pushing would (exact growth for
    /// every small batch would copy the list each time).
    pub(crate) fn reserve(&mut self, additional: usize) {
        let room = self.max_len.saturating_sub(self.inner.len());
        let additional = additional.min(room);
        if additional >= self.inner.len() {
            self.inner.reserve_exact(additional);
        } else {
            self.inner.reserve(additional);
        }
    }

    pub(crate) fn new(inner: Vec<Member<T>>) -> Self {
        // XXX This doesn't prevent someone initializing with
        //     duplicated members... Not a problem (yet?) since
        //     inner is always empty outside of tests
        let num_active = inner.iter().filter(|member| member.is_active()).count();
        let num_suspect = inner
            .iter()
            .filter(|member| member.state == State::Suspect)
            .count();

        let mut members = Self {
            cursor: 0,
            num_active,
            num_suspect,
            ignore_stale_down: false,
            inner,
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            max_len: usize::MAX,
            refused: 0,
        };
        members.reindex();
        members
    }

    fn reindex(&mut self) {
        self.index.clear();
        for pos in 0..self.inner.len() {
            // With duplicates (see `new`), the first one wins, like
            // the linear search this index replaces.
            let addr = self.inner[pos].id.addr();
            if self.position_of(&addr).is_none() {
                self.index_insert(&addr, pos);
            }
        }
    }

    fn hash_addr(&self, addr: &T::Addr) -> u64 {
        self.hasher.hash_one(addr)
    }

    // Requires the index to be in sync with `inner`
    fn position_of(&self, addr: &T::Addr) -> Option<usize> {
        let inner = &self.inner;
        self.index
            .find(self.hash_addr(addr), |&pos| {
                inner
                    .get(pos as usize)
                    .is_some_and(|member| member.id.addr() == *addr)
            })
            .map(|&pos| pos as usize)
    }

    // Indexes `inner[pos]`, whose address is `addr`. Every indexed
    // position must hold the member it was indexed for (a resize
    // rehashes them).
    fn index_insert(&mut self, addr: &T::Addr, pos: usize) {
        debug_assert!(u32::try_from(pos).is_ok(), "over 4G members");
        let hash = self.hash_addr(addr);
        let Self {
            index,
            inner,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, pos as u32, |&p| {
            hasher.hash_one(inner[p as usize].id.addr())
        });
    }

    // Changes the indexed position `from` (indexed for `addr`) into
    // `to`; positions are unique, so matching on them is exact.
    fn index_move(&mut self, addr: &T::Addr, from: usize, to: usize) {
        let hash = self.hash_addr(addr);
        match self.index.find_mut(hash, |&p| p as usize == from) {
            Some(p) => *p = to as u32,
            None => debug_assert!(false, "position {from} not indexed"),
        }
    }

    fn index_remove(&mut self, addr: &T::Addr, pos: usize) {
        let hash = self.hash_addr(addr);
        match self.index.find_entry(hash, |&p| p as usize == pos) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => debug_assert!(false, "position {pos} not indexed"),
        }
    }

    // Next member that's considered active
    // Chosen at random (shuffle + round-robin)
    pub(crate) fn next(&mut self, mut rng: impl RngExt) -> Option<&Member<T>> {
        // Round-robin with a shuffle at the end
        if self.cursor >= self.inner.len() {
            self.inner.shuffle(&mut rng);
            // (shoal fork) Give back what a burst of joins over-allocated
            // (the list doubles as it grows): once per round of probes.
            if self.inner.capacity() > self.inner.len() + self.inner.len() / 4 + 16 {
                self.inner.shrink_to_fit();
            }
            self.reindex();
            self.cursor = 0;
        }

        // Find an active member from cursor..len()
        let position = self
            .inner
            .iter()
            .skip(self.cursor)
            .position(|m| m.is_active())
            // Since we skip(), position() will start counting from zero
            // this ensures it's actually the index of the chosen member
            .map(|pos| pos + self.cursor);

        // And if we don't find any: try from 0..cursor
        let position = position.or_else(|| {
            self.inner
                .iter()
                .take(self.cursor)
                .position(|m| m.is_active())
        });

        if let Some(pos) = position {
            if pos < self.cursor {
                // We wrapped around the list to find a member. A shuffle
                // is needed, so we set it to MAX. Any other value could
                // cause the shuffle to not happen since members may join
                // in-between probes
                self.cursor = usize::MAX;
            } else {
                self.cursor = pos.saturating_add(1);
            }
            self.inner.get(pos)
        } else {
            None
        }
    }

    /// Appends up to `wanted` distinct members that pass `picker` to
    /// `output`, chosen uniformly at random.
    ///
    /// `max_eligible` is an upper bound on how many members can pass
    /// `picker`. (shoal fork) When eligible members are dense, this
    /// probes random positions (expected O(wanted) work instead of
    /// O(members)); it falls back to reservoir sampling over the whole
    /// list when they are sparse or when a bounded number of probes
    /// did not find enough of them. Either way the choice only depends
    /// on the member list and on `rng`.
    fn choose_members<F>(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        mut rng: impl RngExt,
        max_eligible: usize,
        picker: F,
    ) where
        F: Fn(&Member<T>) -> bool,
    {
        if wanted == 0 || max_eligible == 0 {
            return;
        }
        let start = output.len();
        let len = self.inner.len();

        if len >= PROBE_MIN_MEMBERS
            && max_eligible >= wanted.saturating_mul(2)
            && max_eligible.saturating_mul(2) >= len
        {
            let max_tries = wanted.saturating_mul(4).saturating_add(16);
            let mut chosen: Vec<usize> = Vec::with_capacity(wanted);
            let mut tries = 0;
            while chosen.len() < wanted && tries < max_tries {
                tries += 1;
                let pos = rng.random_range(0..len);
                if chosen.contains(&pos) {
                    continue;
                }
                let member = &self.inner[pos];
                if picker(member) {
                    chosen.push(pos);
                    output.push(member.clone());
                }
            }
            if chosen.len() == wanted {
                return;
            }
            // Too few eligible members found: start over with a scan
            output.truncate(start);
        }

        // Basic reservoir sampling
        let mut num_chosen = 0;
        let mut num_seen = 0;

        for member in &self.inner {
            if !picker(member) {
                continue;
            }

            num_seen += 1;
            if num_chosen < wanted {
                num_chosen += 1;
                output.push(member.clone());
            } else {
                let replace_at = rng.random_range(0..num_seen);
                if replace_at < wanted {
                    output[start + replace_at] = member.clone();
                }
            }
        }
    }

    pub(crate) fn choose_down_members(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        rng: impl RngExt,
    ) {
        let num_down = self.inner.len().saturating_sub(self.num_active);
        self.choose_members(wanted, output, rng, num_down, |member| !member.is_active());
    }

    pub(crate) fn choose_active_members<F>(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        rng: impl RngExt,
        picker: F,
    ) where
        F: Fn(&T) -> bool,
    {
        self.choose_members(wanted, output, rng, self.num_active, |member| {
            member.is_active() && picker(member.id())
        });
    }

    pub(crate) fn remove_if_down(&mut self, id: &T) -> Option<Member<T>> {
        let addr = id.addr();
        let pos = self.position_of(&addr)?;
        let member = &self.inner[pos];
        if &member.id != id || member.state != State::Down {
            return None;
        }

        self.index_remove(&addr, pos);
        let last = self.inner.len() - 1;
        if pos != last {
            // The last member is about to move to `pos`
            let moved = self.inner[last].id.addr();
            self.index_move(&moved, last, pos);
        }
        Some(self.inner.swap_remove(pos))
    }

    pub(crate) fn iter_active(&self) -> impl Iterator<Item = &Member<T>> {
        self.inner.iter().filter(|m| m.is_active())
    }

    /// (shoal fork) The member with this identity, if known.
    pub(crate) fn get(&self, id: &T) -> Option<&Member<T>> {
        self.get_by_addr(&id.addr()).filter(|m| &m.id == id)
    }

    /// (shoal fork) The member at this address, if known.
    pub(crate) fn get_by_addr(&self, addr: &T::Addr) -> Option<&Member<T>> {
        self.position_of(addr).map(|pos| &self.inner[pos])
    }

    pub(crate) fn has_addr(&self, addr: &T::Addr) -> bool {
        self.position_of(addr).is_some()
    }

    pub(crate) fn is_active_addr(&self, addr: &T::Addr) -> bool {
        self.position_of(addr)
            .is_some_and(|pos| self.inner[pos].is_active())
    }

    pub(crate) fn is_active(&self, id: &T) -> bool {
        self.position_of(&id.addr()).is_some_and(|pos| {
            let member = &self.inner[pos];
            &member.id == id && member.is_active()
        })
    }

    pub(crate) fn apply_existing_if<F: Fn(&Member<T>) -> bool>(
        &mut self,
        mut update: Member<T>,
        condition: F,
    ) -> Option<ApplySummary<T>> {
        let pos = self.position_of(&update.id().addr())?;
        let ignore_stale_down = self.ignore_stale_down;
        let known_member = &mut self.inner[pos];

        let id_conflict = known_member.id != update.id;

        // If the update wins the conflict, the full member
        // state is replaced (it's essentially a rejoin)
        // If it doesn't, it gets discarded
        if id_conflict && known_member.id.win_addr_conflict(&update.id) {
            return Some(ApplySummary {
                is_active_now: known_member.is_active(),
                apply_successful: false,
                changed_active_set: false,
                conflict: ConflictResult::Lost,
            });
        }

        if !condition(known_member) {
            return Some(ApplySummary {
                is_active_now: known_member.is_active(),
                apply_successful: false,
                changed_active_set: false,
                conflict: if id_conflict {
                    ConflictResult::FailedCondition
                } else {
                    ConflictResult::NoConflict
                },
            });
        }
        let was_active = known_member.is_active();
        let was_suspect = known_member.state == State::Suspect;

        // Same address either way: the index stays valid
        let (apply_successful, conflict) = if id_conflict {
            core::mem::swap(&mut known_member.id, &mut update.id);
            known_member.state = update.state;
            known_member.incarnation = update.incarnation;
            (true, ConflictResult::Replaced(update.id))
        } else if ignore_stale_down
            && update.state == State::Down
            && update.incarnation < known_member.incarnation
        {
            (false, ConflictResult::NoConflict)
        } else {
            (
                known_member.change_state(update.incarnation, update.state),
                ConflictResult::NoConflict,
            )
        };

        let is_active_now = known_member.is_active();
        let changed_active_set = is_active_now != was_active;
        let is_suspect_now = known_member.state == State::Suspect;
        if is_suspect_now != was_suspect {
            if is_suspect_now {
                self.num_suspect += 1;
            } else {
                self.num_suspect -= 1;
            }
        }

        if changed_active_set {
            // XXX Overzealous checking
            if is_active_now {
                self.num_active = self.num_active.saturating_add(1);
            } else {
                self.num_active = self.num_active.saturating_sub(1);
            }
        }

        Some(ApplySummary {
            is_active_now,
            apply_successful,
            changed_active_set,
            conflict,
        })
    }

    pub(crate) fn apply(&mut self, update: Member<T>, mut rng: impl RngExt) -> ApplySummary<T> {
        self.apply_existing_if(update.clone(), |_member| true)
            .unwrap_or_else(|| {
                // (shoal fork) The list is full: an unknown member is refused.
                if self.inner.len() >= self.max_len {
                    self.refused = self.refused.saturating_add(1);
                    return ApplySummary {
                        is_active_now: false,
                        apply_successful: false,
                        changed_active_set: false,
                        conflict: ConflictResult::FailedCondition,
                    };
                }
                // Unknown member, we'll register it
                let is_active_now = update.is_active();
                if update.state == State::Suspect {
                    self.num_suspect += 1;
                }

                // Insert at the end and swap with a random position.
                let addr = update.id().addr();
                self.inner.push(update);
                let inserted_at = self.inner.len() - 1;

                let swap_idx = (0..self.inner.len())
                    .choose(&mut rng)
                    .unwrap_or(inserted_at);

                self.index_insert(&addr, inserted_at);

                if swap_idx != inserted_at {
                    // Swap the two positions in the index (through a
                    // placeholder: positions must stay unique)
                    let displaced = self.inner[swap_idx].id.addr();
                    self.index_move(&addr, inserted_at, u32::MAX as usize);
                    self.index_move(&displaced, swap_idx, inserted_at);
                    self.index_move(&addr, u32::MAX as usize, swap_idx);
                    self.inner.swap(swap_idx, inserted_at);
                }

                if is_active_now {
                    self.num_active = self.num_active.saturating_add(1);
                }

                ApplySummary {
                    is_active_now,
                    apply_successful: true,
                    // Registering a new active member changes the active set
                    changed_active_set: is_active_now,
                    conflict: ConflictResult::NoConflict,
                }
            })
    }
}

#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub(crate) struct ApplySummary<T> {
    pub(crate) is_active_now: bool,
    pub(crate) apply_successful: bool,
    pub(crate) changed_active_set: bool,
    pub(crate) conflict: ConflictResult<T>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConflictResult<T> {
    NoConflict,
    Replaced(T),
    Lost,
    FailedCondition,
}

#[cfg(test)]
mod tests {

    use crate::Identity;

    use super::*;

    use alloc::vec;
    use rand::{SeedableRng, rngs::SmallRng};

    #[derive(Clone, Debug, PartialEq, Eq, Copy, PartialOrd, Ord)]
    struct Id(&'static str);
    impl crate::Identity for Id {
        type Addr = &'static str;

        fn renew(&self) -> Option<Self> {
            None
        }

        fn addr(&self) -> Self::Addr {
            self.0
        }

        fn win_addr_conflict(&self, _adversary: &Self) -> bool {
            panic!("addr is self, there'll never be a conflict");
        }
    }

    use State::*;

    #[test]
    fn alive_transitions() {
        let mut member = Member::new(Id("a"), 0, Alive);

        // Alive => Alive
        assert!(
            member.change_state(member.incarnation + 1, Alive),
            "can transition to a higher incarnation"
        );

        assert_eq!(1, member.incarnation);
        assert_eq!(Alive, member.state);

        assert!(
            !member.change_state(member.incarnation - 1, Alive),
            "cannot transition to a lower incarnation"
        );

        assert!(
            !member.change_state(member.incarnation, Alive),
            "cannot transition to same state and incarnation {:?}",
            member
        );

        // Alive => Suspect
        assert!(
            !member.change_state(member.incarnation - 1, Suspect),
            "lower suspect incarnation shouldn't transition"
        );

        assert!(
            member.change_state(member.incarnation, Suspect),
            "transition to suspect with same incarnation"
        );
        assert_eq!(Suspect, member.state);

        member = Member::new(Id("b"), 0, Alive);
        assert!(
            member.change_state(member.incarnation + 1, Suspect),
            "transition to suspect with higher incarnation"
        );
        assert_eq!(1, member.incarnation);
        assert_eq!(Suspect, member.state);

        // Alive => Down, always works
        assert!(
            Member::new("c", 1, Alive).change_state(0, Down),
            "transitions to down on lower incarnation"
        );
        assert!(
            Member::new("c", 0, Alive).change_state(0, Down),
            "transitions to down on same incarnation"
        );
        assert!(
            Member::new("c", 0, Alive).change_state(1, Down),
            "transitions to down on higher incarnation"
        );
    }

    #[test]
    fn suspect_transitions() {
        let mut member = Member::new(Id("a"), 0, Suspect);

        // Suspect => Suspect
        assert!(
            member.change_state(member.incarnation + 1, Suspect),
            "can transition to a higher incarnation"
        );

        assert_eq!(1, member.incarnation);
        assert_eq!(Suspect, member.state);

        assert!(
            !member.change_state(member.incarnation - 1, Suspect),
            "cannot transition to a lower incarnation"
        );

        assert!(
            !member.change_state(member.incarnation, Suspect),
            "cannot transition to same state and incarnation {:?}",
            member
        );

        // Suspect => Alive
        assert!(
            !member.change_state(member.incarnation - 1, Alive),
            "lower alive incarnation shouldn't transition"
        );
        assert!(
            !member.change_state(member.incarnation, Alive),
            "same alive incarnation shouldn't transition"
        );

        assert!(
            member.change_state(member.incarnation + 1, Alive),
            "can transition to alive with higher incarnation"
        );
        assert_eq!(Alive, member.state);

        // Suspect => Down, always works
        assert!(
            Member::new("c", 1, Suspect).change_state(0, Down),
            "transitions to down on lower incarnation"
        );
        assert!(
            Member::new("c", 0, Suspect).change_state(0, Down),
            "transitions to down on same incarnation"
        );
        assert!(
            Member::new("c", 0, Suspect).change_state(1, Down),
            "transitions to down on higher incarnation"
        );
    }

    #[test]
    fn down_never_transitions() {
        let mut member = Member::new("dead", 1, Down);

        for incarnation in 0..=2 {
            assert!(!member.change_state(incarnation, Alive));
            assert!(!member.change_state(incarnation, Suspect));
            assert!(!member.change_state(incarnation, Down));
        }
    }

    #[test]
    fn next_walks_sequentially_then_shuffles() {
        let ordered_ids = vec![Id("1"), Id("2"), Id("3"), Id("4"), Id("5")];
        let mut members = Members::new(ordered_ids.iter().cloned().map(Member::alive).collect());

        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        for wanted in ordered_ids.iter() {
            let got = members
                .next(&mut rng)
                .expect("Non-empty set of Alive members should always yield Some()")
                .id;
            assert_eq!(wanted, &got);
        }

        // By now we walked through all known live members so
        // the internal state should've shuffled.
        // We'll verify that by calling `next()` multiple
        // times and comparing with the original `ordered_ids`
        let mut after_shuffle = (0..ordered_ids.len())
            .map(|_| members.next(&mut rng).unwrap().id)
            .collect::<Vec<_>>();
        assert_ne!(ordered_ids, after_shuffle);

        // The shuffle only happens once the cursor walks
        // through the whole set, so `after_shuffle` should
        // contain every member, like `ordered_ids`, but in
        // a distinct order
        after_shuffle.sort_unstable();
        assert_eq!(ordered_ids, after_shuffle);
    }

    #[test]
    fn apply_existing_if_behaviour() {
        let mut members = Members::new(Vec::new());

        assert_eq!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| true),
            "Only yield None only if member is not found"
        );

        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        assert_ne!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| true),
            "Must yield Some() if existing, regardless of condition"
        );

        assert_ne!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| false),
            "Must yield Some() if existing, regardless of condition"
        );
    }

    #[test]
    fn apply_summary_behaviour() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        // New and active member
        let res = members.apply(Member::suspect(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: true,
                changed_active_set: true,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());
        assert_eq!(1, members.num_active());

        // Failed attempt to change member id=1 to alive
        // (since it's already suspect with same incarnation)
        let res = members.apply(Member::alive(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: false,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());

        // Successful attempt at changing member id=1 to
        // alive by using a higher incarnation
        let res = members.apply(Member::new(Id("1"), 1, State::Alive), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: true,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());

        // Change existing member to down
        let res = members.apply(Member::down(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: false,
                apply_successful: true,
                changed_active_set: true,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());
        assert_eq!(0, members.num_active());

        // New and inactive member
        let res = members.apply(Member::down(Id("2")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: false,
                apply_successful: true,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(2, members.len());
        assert_eq!(0, members.num_active());
    }

    #[test]
    fn remove_if_down_works() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        assert_eq!(
            None,
            members.remove_if_down(&Id("1")),
            "cant remove member that does not exist"
        );
        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        assert_eq!(
            None,
            members.remove_if_down(&Id("1")),
            "cant remove member that isnt down"
        );
        let _ = members.apply(Member::down(Id("1")), &mut rng);

        assert_eq!(
            Some(Member::down(Id("1"))),
            members.remove_if_down(&Id("1")),
            "must return the removed member"
        );
    }

    #[test]
    fn next_yields_none_with_no_active_members() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        assert_eq!(
            None,
            members.next(&mut rng),
            "next() should yield None when there are no members"
        );

        let _ = members.apply(Member::down(Id("-1")), &mut rng);
        let _ = members.apply(Member::down(Id("-2")), &mut rng);
        let _ = members.apply(Member::down(Id("-3")), &mut rng);

        assert_eq!(
            None,
            members.next(&mut rng),
            "next() should yield None when there are no active members"
        );

        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        for _i in 0..10 {
            assert_eq!(
                Some(Id("1")),
                members.next(&mut rng).map(|m| m.id),
                "next() should yield the same member if its the only active"
            );
        }
    }

    #[test]
    fn choose_active_members_behaviour() {
        let members = Members::new(Vec::from([
            // 5 active members
            Member::alive(Id("1")),
            Member::alive(Id("2")),
            Member::alive(Id("3")),
            Member::suspect(Id("4")),
            Member::suspect(Id("5")),
            // 2 down
            Member::down(Id("6")),
            Member::down(Id("7")),
        ]));

        assert_eq!(7, members.len());
        assert_eq!(5, members.num_active());

        let mut out = Vec::new();
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        out.clear();
        members.choose_active_members(0, &mut out, &mut rng, |_| true);
        assert_eq!(0, out.len(), "Can pointlessly choose 0 members");

        out.clear();
        members.choose_active_members(10, &mut out, &mut rng, |_| false);
        assert_eq!(0, out.len(), "Filtering works");

        out.clear();
        members.choose_active_members(members.len(), &mut out, &mut rng, |_| true);
        assert_eq!(
            members.num_active(),
            out.len(),
            "Only chooses active members"
        );

        out.clear();
        members.choose_active_members(2, &mut out, &mut rng, |_| true);
        assert_eq!(2, out.len(), "Respects `wanted` even if we have more");

        out.clear();
        members.choose_active_members(usize::MAX, &mut out, &mut rng, |&member_id| {
            member_id.0.parse::<usize>().expect("number") > 4
        });
        assert_eq!(vec![Member::suspect(Id("5"))], out);

        out.clear();
        members.choose_down_members(3, &mut out, &mut rng);
        assert_eq!(2, out.len());
        assert!(out.iter().any(|m| m.id == Id("7")));
        assert!(out.iter().any(|m| m.id == Id("6")));
    }

    #[test]
    fn sets_replaced_id_on_addr_conflict() {
        let id = crate::testing::ID::new(1).rejoinable();
        let mut members = Members::new(Vec::from([
            // 5 active members
            Member::alive(id),
        ]));

        let renewed = id.renew().unwrap();
        let summary = members
            .apply_existing_if(Member::alive(renewed), |_| true)
            .expect("member found");

        assert!(summary.apply_successful);
        assert_eq!(ConflictResult::Replaced(id), summary.conflict);

        let another = renewed.renew().unwrap();
        let summary = members
            .apply_existing_if(Member::alive(another), |_| false)
            .expect("member found");

        assert!(!summary.apply_successful);
        assert_eq!(
            ConflictResult::FailedCondition,
            summary.conflict,
            "must not apply if condition fails"
        );

        // trying to go back to the past leads to
        // conflict resolution failure
        let summary = members
            .apply_existing_if(Member::alive(id), |_| true)
            .expect("member found");

        assert_eq!(ConflictResult::Lost, summary.conflict,);
        assert!(!summary.apply_successful, "must not apply if conflict lost");
    }

    // (shoal fork) tests for the address index and choose_members probing

    use crate::testing::ID;

    #[test]
    fn index_stays_consistent() {
        let mut rng = SmallRng::seed_from_u64(0x1D3);
        let mut members = Members::new(Vec::new());

        // Inserts swap with random positions
        for addr in 0..200u8 {
            let _ = members.apply(Member::alive(ID::new(addr).rejoinable()), &mut rng);
            members.assert_index_consistent();
        }
        assert_eq!(200, members.len());

        // Walking past the end shuffles the list
        for _ in 0..450 {
            assert!(members.next(&mut rng).is_some());
        }
        members.assert_index_consistent();

        // Every member is found by address
        for addr in 0..200u8 {
            assert!(members.is_active(&ID::new(addr)));
            assert!(
                !members.is_active(&ID::new(addr).bump()),
                "same addr, other id"
            );
        }

        // Rename conflicts keep the address, hence the index
        for addr in (0..200u8).step_by(3) {
            let summary = members
                .apply_existing_if(Member::alive(ID::new(addr).bump()), |_| true)
                .expect("known addr");
            assert_eq!(ConflictResult::Replaced(ID::new(addr)), summary.conflict);
            assert!(members.is_active(&ID::new(addr).bump()));
            assert!(!members.is_active(&ID::new(addr)));
        }
        members.assert_index_consistent();

        // Down then removed: swap_remove moves the last member
        for addr in (0..200u8).step_by(2) {
            let id = if addr % 3 == 0 {
                ID::new(addr).bump()
            } else {
                ID::new(addr)
            };
            let _ = members.apply(Member::new(id, 5, State::Down), &mut rng);
            assert_eq!(None, members.remove_if_down(&ID::new(addr).bump().bump()));
            assert!(members.remove_if_down(&id).is_some());
            assert_eq!(None, members.remove_if_down(&id), "already gone");
            members.assert_index_consistent();
        }
        assert_eq!(100, members.len());
        assert_eq!(100, members.num_active());

        for _ in 0..250 {
            assert!(members.next(&mut rng).is_some());
        }
        members.assert_index_consistent();

        for addr in 0..200u8 {
            let id = if addr % 3 == 0 {
                ID::new(addr).bump()
            } else {
                ID::new(addr)
            };
            assert_eq!(addr % 2 == 1, members.is_active(&id), "{addr}");
            assert_eq!(
                addr % 2 == 1,
                members
                    .apply_existing_if(Member::alive(id), |_| true)
                    .is_some()
            );
        }
        members.assert_index_consistent();
    }

    #[test]
    fn suspect_count_follows_every_change() {
        // (shoal fork) `num_suspect` through insert, suspicion, refutation,
        // failure and removal.
        let mut rng = SmallRng::seed_from_u64(0x5A5);
        let mut members = Members::new(Vec::new());
        for addr in 0..10u8 {
            let _ = members.apply(Member::alive(ID::new(addr)), &mut rng);
        }
        let _ = members.apply(Member::suspect(ID::new(10)), &mut rng);
        assert_eq!(1, members.num_suspect());
        for addr in 0..4u8 {
            let _ = members.apply(Member::suspect(ID::new(addr)), &mut rng);
        }
        members.assert_index_consistent();
        assert_eq!(5, members.num_suspect());
        // Refuted with a higher incarnation
        let _ = members.apply(Member::new(ID::new(0), 1, State::Alive), &mut rng);
        // Declared down, then removed
        let _ = members.apply(Member::down(ID::new(1)), &mut rng);
        assert_eq!(3, members.num_suspect());
        assert!(members.remove_if_down(&ID::new(1)).is_some());
        members.assert_index_consistent();
        assert_eq!(3, members.num_suspect());
    }

    fn many(num_active: u8, num_down: u8) -> Members<ID> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut members = Members::new(Vec::new());
        for addr in 0..num_active {
            let _ = members.apply(Member::alive(ID::new(addr)), &mut rng);
        }
        for addr in num_active..num_active + num_down {
            let _ = members.apply(Member::down(ID::new(addr)), &mut rng);
        }
        members
    }

    fn assert_distinct(out: &[Member<ID>]) {
        let mut ids: Vec<u8> = out.iter().map(|m| m.id().addr()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(out.len(), ids.len(), "distinct members: {out:?}");
    }

    #[test]
    fn choose_members_distinct_and_filtered_on_large_lists() {
        // Dense actives (probing path) and sparse actives (scan path)
        for (num_active, num_down) in [(200u8, 40u8), (40, 200), (120, 120), (33, 0)] {
            let members = many(num_active, num_down);
            let mut rng = SmallRng::seed_from_u64(0xC0);
            let mut out = Vec::new();
            for wanted in [1usize, 3, 5, 16, 40, 300] {
                for _round in 0..50 {
                    out.clear();
                    members
                        .choose_active_members(wanted, &mut out, &mut rng, |id| id.addr() % 2 == 0);
                    assert_eq!(wanted.min(num_active.div_ceil(2).into()), out.len());
                    assert_distinct(&out);
                    assert!(out.iter().all(|m| m.is_active() && m.id().addr() % 2 == 0));

                    out.clear();
                    members.choose_down_members(wanted, &mut out, &mut rng);
                    assert_eq!(wanted.min(num_down.into()), out.len());
                    assert_distinct(&out);
                    assert!(out.iter().all(|m| !m.is_active()));
                }
            }
        }
    }

    #[test]
    fn choose_members_is_seeded_and_spread() {
        let members = many(250, 5);
        let pick = |seed| {
            let mut out = Vec::new();
            members.choose_active_members(4, &mut out, SmallRng::seed_from_u64(seed), |_| true);
            out
        };
        assert_eq!(pick(1), pick(1), "same seed, same choice");

        // Every active member gets picked at some point
        let mut seen = [false; 256];
        let mut rng = SmallRng::seed_from_u64(2);
        let mut out = Vec::new();
        for _ in 0..2000 {
            out.clear();
            members.choose_active_members(4, &mut out, &mut rng, |_| true);
            for m in &out {
                seen[usize::from(m.id().addr())] = true;
            }
        }
        assert!(seen[..250].iter().all(|s| *s));
        assert!(!seen[250..].iter().any(|s| *s), "down members never chosen");
    }

    #[test]
    fn a_full_list_refuses_unknown_members_and_updates_known_ones() {
        // (shoal fork) `max_len`: the list never grows past it.
        let mut members = many(10, 0);
        members.max_len = 10;
        let mut rng = SmallRng::seed_from_u64(4);
        let res = members.apply(Member::alive(ID::new(200)), &mut rng);
        assert!(!res.apply_successful);
        assert_eq!((members.inner.len(), members.refused), (10, 1));
        // A known member is still updated.
        let res = members.apply(Member::suspect(ID::new(3)), &mut rng);
        assert!(res.apply_successful);
        members.assert_index_consistent();
    }

    #[test]
    fn choose_members_falls_back_when_picker_is_picky() {
        // Dense actives, but the picker only accepts one of them:
        // probing runs out of tries and the scan still finds it.
        let members = many(250, 0);
        let mut rng = SmallRng::seed_from_u64(3);
        let mut out = Vec::new();
        for _ in 0..20 {
            out.clear();
            members.choose_active_members(2, &mut out, &mut rng, |id| id.addr() == 77);
            assert_eq!(vec![Member::alive(ID::new(77))], out);
        }
    }
}
