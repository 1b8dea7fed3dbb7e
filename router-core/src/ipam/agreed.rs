//! What the ring's voters decide after it exists: which blocks are in use, and which space of
//! peers gone for good returns to the living.
//!
//! A peer owns its blocks through the ring (only an owner writes a block), but it puts a block
//! to use only once a decision says so: an *activation*. A decision is a [`Decree`] chosen for
//! one *slot* of a log by single-decree Paxos among the voters of that slot, with the same
//! gossiped votes as the ring's first agreement; the decrees, applied in slot order, give every
//! peer the same [`Agreed`] state. A *reclaim* takes the blocks of a peer gone for good, except
//! those an activation put in use, and writes them to the living at a new epoch, which outranks
//! every hand-over the gone peer made before it. So:
//! - a block in use was activated in some slot; a reclaim in a later slot skips it, and a
//!   reclaim in an earlier slot makes the activation invalid (its entry predates the reclaim's
//!   epoch), so no block is both in use and reclaimed;
//! - a peer cut off from a majority of the voters keeps using its active blocks and never takes
//!   another: the majority may reclaim only what is not in use.
//!
//! Each decree also names the voters of the next slot (gone voters out, live peers in, up to
//! [`VOTERS_MAX`]); a slot's votes count only among its own voters, who all know the decree
//! before it, so the voter set can change at every step.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ring::{Block, Owner};

/// Most voters at once.
pub const VOTERS_MAX: usize = 5;
/// Most changes in one decree.
pub const DECREE_MAX: usize = 64;

/// The decided state: the same at every peer that applied the same slots.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Agreed {
    /// Slots decided and applied.
    pub slot: u32,
    /// Who votes in the next slot.
    pub voters: BTreeSet<Owner>,
    /// Blocks in use: the ring entry their owner activated.
    pub active: BTreeMap<u16, Block>,
    /// Blocks reclaimed: the entry the last reclaim wrote.
    pub taken: BTreeMap<u16, Block>,
}

/// One change a decree makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The owner of `entry` puts block `block` to use.
    Activate {
        /// The block.
        block: u16,
        /// Its ring entry as its owner holds it.
        entry: Block,
    },
    /// `gone`'s blocks (as the proposer's ring shows them) go to `to`, unless in use.
    Reclaim {
        /// The peer (life) gone for good.
        gone: Owner,
        /// Who takes the space.
        to: Owner,
        /// The blocks, ascending.
        blocks: Vec<u16>,
    },
}

/// What one slot decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decree {
    /// Applied in order.
    pub changes: Vec<Change>,
    /// The voters of the next slot (never empty).
    pub voters: BTreeSet<Owner>,
}

impl Agreed {
    /// A majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether an activation of block `i` at ring entry `e` would take effect now: the entry
    /// is not older than the block's last reclaim, and newer than its last activation.
    pub fn may_activate(&self, i: u16, e: Block) -> bool {
        self.taken.get(&i).is_none_or(|t| e >= *t) && self.active.get(&i).is_none_or(|a| e > *a)
    }

    /// Whether block `i` at ring entry `e` is in use by the entry's owner.
    pub fn is_active(&self, i: u16, e: Block) -> bool {
        self.active.get(&i) == Some(&e)
    }

    /// Applies the decree of the current slot; returns the ring entries its reclaims write.
    pub fn apply(&mut self, d: &Decree) -> Vec<(u16, Block)> {
        let epoch = self.slot + 1;
        let mut writes = Vec::new();
        for c in &d.changes {
            match c {
                Change::Activate { block, entry } => {
                    if self.may_activate(*block, *entry) {
                        self.active.insert(*block, *entry);
                    }
                }
                Change::Reclaim { to, blocks, .. } => {
                    for &i in blocks {
                        if !self.active.contains_key(&i) {
                            let b = Block { epoch, version: 1, owner: *to };
                            self.taken.insert(i, b);
                            writes.push((i, b));
                        }
                    }
                }
            }
        }
        if !d.voters.is_empty() {
            self.voters = d.voters.clone();
        }
        self.slot = epoch;
        writes
    }
}

/// A proposal number within one slot: a round, its proposer breaking ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct SlotBallot {
    /// Grows with every retry (0: none).
    pub round: u32,
    /// Who proposes.
    pub proposer: Owner,
}

/// One voter's Paxos state for one slot, as gossiped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotVote {
    /// The voter.
    pub voter: Owner,
    /// The slot.
    pub slot: u32,
    /// The highest ballot promised.
    pub promised: SlotBallot,
    /// The ballot and decree last accepted.
    pub accepted: Option<(SlotBallot, Decree)>,
}

impl SlotVote {
    /// Order of one voter's states: a later one is greater.
    pub fn rank(&self) -> (u32, SlotBallot, Option<SlotBallot>) {
        (self.slot, self.promised, self.accepted.as_ref().map(|(b, _)| *b))
    }
}

/// The votes of the current slot (and of later ones heard early).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    /// Each voter's latest vote in each slot, by slot and voter.
    pub votes: BTreeMap<(u32, Owner), SlotVote>,
}

/// What a step of [`Log::think`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogStep {
    /// Nothing changed.
    Idle,
    /// Our vote changed (gossip it).
    Voted,
    /// A quorum accepted one decree for the current slot.
    Decided(Decree),
}

impl Log {
    /// Merges another peer's copy of a vote; true when ours changed. Our own vote is ours to
    /// write, and votes of slots already decided are history.
    pub fn merge(&mut self, me: Owner, slot: u32, v: SlotVote) -> bool {
        if v.voter == me || v.slot < slot {
            return false;
        }
        match self.votes.get(&(v.slot, v.voter)) {
            Some(cur) if cur.rank() >= v.rank() => false,
            _ => {
                self.votes.insert((v.slot, v.voter), v);
                true
            }
        }
    }

    /// Forgets votes of slots before `slot` (they are decided).
    pub fn advance(&mut self, slot: u32) {
        self.votes.retain(|(s, _), _| *s >= slot);
    }

    fn current<'a>(&'a self, a: &'a Agreed) -> impl Iterator<Item = &'a SlotVote> + 'a {
        self.votes
            .range((a.slot, Owner::default())..)
            .map(|(_, v)| v)
            .take_while(move |v| v.slot == a.slot)
            .filter(move |v| a.voters.contains(&v.voter))
    }

    fn mine(&mut self, me: Owner, slot: u32) -> &mut SlotVote {
        self.votes.entry((slot, me)).or_insert(SlotVote {
            voter: me,
            slot,
            promised: SlotBallot::default(),
            accepted: None,
        })
    }

    /// Our vote in the current slot, if we cast one.
    pub fn my_vote(&self, me: Owner, a: &Agreed) -> Option<&SlotVote> {
        self.votes.get(&(a.slot, me))
    }

    /// The decree of the current slot, once a quorum of its voters accepted one ballot.
    pub fn decided(&self, a: &Agreed) -> Option<Decree> {
        let mut counts: BTreeMap<SlotBallot, usize> = BTreeMap::new();
        for v in self.current(a) {
            if let Some((b, d)) = &v.accepted {
                let c = counts.entry(*b).or_insert(0);
                *c += 1;
                if *c >= a.quorum() {
                    return Some(d.clone());
                }
            }
        }
        None
    }

    /// Starts a ballot for the current slot above every ballot seen there, proposed by `me`.
    pub fn propose(&mut self, me: Owner, a: &Agreed) {
        let top = self.current(a).map(|v| v.promised.round.max(v.accepted.as_ref().map_or(0, |(b, _)| b.round))).max();
        let b = SlotBallot { round: top.unwrap_or(0) + 1, proposer: me };
        self.mine(me, a.slot).promised = b;
    }

    /// One round of reading the current slot's votes as voter `me`: promise, accept (our
    /// own ballot's value being `batch` when no promiser accepted one), decide. A peer that
    /// is not a voter of the slot only learns the decision.
    pub fn think(&mut self, me: Owner, a: &Agreed, batch: impl FnOnce() -> Decree) -> LogStep {
        if let Some(d) = self.decided(a) {
            return LogStep::Decided(d);
        }
        if !a.voters.contains(&me) {
            return LogStep::Idle;
        }
        let before = self.my_vote(me, a).cloned();
        let mine = self.mine(me, a.slot).promised;
        let prepared = self.current(a).filter(|v| v.voter == v.promised.proposer).map(|v| v.promised).max();
        if let Some(b) = prepared.filter(|&b| b > mine) {
            self.mine(me, a.slot).promised = b;
        }
        let promised = self.mine(me, a.slot).promised;
        if promised.round > 0 {
            let accepted_here = self.votes[&(a.slot, me)].accepted.as_ref().is_some_and(|(b, _)| *b == promised);
            if promised.proposer == me {
                let promisers: Vec<&SlotVote> = self.current(a).filter(|v| v.promised == promised).collect();
                if promisers.len() >= a.quorum() && !accepted_here {
                    let earlier = promisers.iter().filter_map(|v| v.accepted.as_ref()).max_by_key(|(b, _)| *b);
                    let value = earlier.map_or_else(batch, |(_, d)| d.clone());
                    self.mine(me, a.slot).accepted = Some((promised, value));
                }
            } else if !accepted_here {
                let theirs = self
                    .current(a)
                    .find(|v| v.voter == promised.proposer)
                    .and_then(|v| v.accepted.clone())
                    .filter(|(b, _)| *b == promised);
                if let Some(p) = theirs {
                    self.mine(me, a.slot).accepted = Some(p);
                }
            }
        }
        if let Some(d) = self.decided(a) {
            return LogStep::Decided(d);
        }
        if self.my_vote(me, a) != before.as_ref() {
            LogStep::Voted
        } else {
            LogStep::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::testnet::owner;
    use proptest::prelude::*;

    fn entry(v: u32, n: u8) -> Block {
        Block { epoch: 0, version: v, owner: owner(n) }
    }

    #[test]
    fn a_reclaim_skips_blocks_in_use_and_outranks_older_entries() {
        let mut a = Agreed { voters: [owner(1)].into(), ..Agreed::default() };
        let d = Decree {
            changes: vec![
                Change::Activate { block: 0, entry: entry(2, 3) },
                Change::Reclaim { gone: owner(3), to: owner(1), blocks: vec![0, 1] },
            ],
            voters: [owner(1), owner(2)].into(),
        };
        let writes = a.apply(&d);
        assert_eq!(writes, vec![(1, Block { epoch: 1, version: 1, owner: owner(1) })], "block 0 is in use");
        assert_eq!(a.slot, 1);
        assert_eq!(a.quorum(), 2);
        // A hand-over of block 1 made before the reclaim can no longer be put to use; one
        // made after it can.
        assert!(!a.may_activate(1, entry(5, 4)));
        assert!(a.may_activate(1, Block { epoch: 1, version: 2, owner: owner(4) }));
        // The activated block moves on only to a newer entry (its owner gave it away).
        assert!(!a.may_activate(0, entry(2, 3)) && a.may_activate(0, entry(3, 4)));
    }

    /// Voters of one slot that each think, then pass every vote they hold to another.
    fn run(n: usize, schedule: &[(u8, u8, bool)]) -> Vec<Option<Decree>> {
        let a = Agreed { voters: (0..n as u8).map(owner).collect(), ..Agreed::default() };
        let mut logs = vec![Log::default(); n];
        let mut decided: Vec<Option<Decree>> = vec![None; n];
        for &(who, to, propose) in schedule {
            let (w, t) = (usize::from(who) % n, usize::from(to) % n);
            let me = owner(w as u8);
            if propose && decided[w].is_none() {
                logs[w].propose(me, &a);
            }
            // Every proposer has its own batch: a decision shows whose won.
            let batch = || Decree { changes: vec![], voters: [me].into() };
            if let LogStep::Decided(d) = logs[w].think(me, &a, batch) {
                if let Some(prev) = &decided[w] {
                    assert_eq!(prev, &d, "a peer's decision never changes");
                }
                decided[w] = Some(d);
            }
            let votes: Vec<SlotVote> = logs[w].votes.values().cloned().collect();
            for v in votes {
                logs[t].merge(owner(t as u8), a.slot, v);
            }
        }
        decided
    }

    #[test]
    fn one_proposer_decides_its_batch() {
        let mut s = vec![(0, 0, true)];
        for _ in 0..3 {
            for w in 0..3u8 {
                for t in 0..3u8 {
                    s.push((w, t, false));
                }
            }
        }
        let d = run(3, &s);
        let want = Decree { changes: vec![], voters: [owner(0)].into() };
        assert!(d.iter().all(|x| x.as_ref() == Some(&want)), "{d:?}");
    }

    proptest! {
        #[test]
        fn no_two_voters_decide_differently(n in 1usize..6, schedule in proptest::collection::vec((any::<u8>(), any::<u8>(), proptest::bool::weighted(0.1)), 0..300)) {
            let d = run(n, &schedule);
            let values: Vec<&Decree> = d.iter().flatten().collect();
            prop_assert!(values.windows(2).all(|w| w[0] == w[1]), "decisions {:?}", d);
        }
    }
}
