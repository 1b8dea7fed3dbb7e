//! Agreement on who creates the ring: single-decree Paxos whose messages are gossiped state.
//!
//! Each peer publishes one entry, written only by itself and only ever growing: the highest
//! ballot it has promised, and the ballot and value it last accepted. Entries travel with the
//! allocator's gossip and merge by keeping the greater, so every peer sees a recent copy of
//! everyone's entry; the steps of Paxos are read off those copies:
//! - *prepare*: a proposer promises its own new ballot in its own entry;
//! - *promise*: an acceptor that sees a proposer's entry promising a ballot above its own
//!   promise promises it too;
//! - *accept*: once a quorum promised its ballot, the proposer accepts the value of the
//!   highest ballot any of them accepted (else itself as the ring's creator); an acceptor
//!   whose promise is that ballot accepts what the proposer's entry accepted;
//! - *decide*: a quorum accepted one ballot.
//!
//! Two quorums intersect and a promise never shrinks, so two ballots that reach a quorum
//! carry one value: at most one ring is created per agreement.

use serde::{Deserialize, Serialize};

use super::ring::Owner;
use crate::peer::PeerName;

/// A proposal number: a round, its proposer's name breaking ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Ballot {
    /// Grows with every retry.
    pub round: u32,
    /// Who proposes.
    pub proposer: PeerName,
}

/// One peer's Paxos state, as gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The peer.
    pub name: PeerName,
    /// The highest ballot promised (round 0: none).
    pub promised: Ballot,
    /// The ballot and value last accepted: who creates the ring.
    pub accepted: Option<(Ballot, Owner)>,
}

impl Vote {
    /// Order of entries from one peer: a later state is greater.
    pub fn rank(&self) -> (Ballot, Option<Ballot>) {
        (self.promised, self.accepted.map(|(b, _)| b))
    }
}

/// The Paxos state of every peer this peer has heard of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paxos {
    /// One vote per peer, by name.
    pub votes: std::collections::BTreeMap<PeerName, Vote>,
}

/// What a step of [`Paxos::think`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    Idle,
    /// Our vote changed (gossip it).
    Voted,
    /// A quorum accepted one value: the ring's creator, and the deciding ballot.
    Decided(Ballot, Owner),
}

impl Paxos {
    /// Merges another peer's copy of a vote; true when ours changed. Our own vote is ours to
    /// write: a copy of it from elsewhere is never taken (it can only be older).
    pub fn merge(&mut self, me: PeerName, v: Vote) -> bool {
        if v.name == me {
            return false;
        }
        match self.votes.get(&v.name) {
            Some(cur) if cur.rank() >= v.rank() => false,
            _ => {
                self.votes.insert(v.name, v);
                true
            }
        }
    }

    fn mine(&mut self, me: PeerName) -> &mut Vote {
        self.votes.entry(me).or_insert(Vote { name: me, promised: Ballot::default(), accepted: None })
    }

    /// The deciding ballot and value, when a quorum of `quorum` votes accepted one ballot.
    pub fn decided(&self, quorum: usize) -> Option<(Ballot, Owner)> {
        let mut counts: std::collections::BTreeMap<(Ballot, Owner), usize> = Default::default();
        for v in self.votes.values() {
            if let Some(a) = v.accepted {
                let c = counts.entry(a).or_insert(0);
                *c += 1;
                if *c >= quorum {
                    return Some(a);
                }
            }
        }
        None
    }

    /// Starts a ballot above every ballot seen, proposed by `me`.
    pub fn propose(&mut self, me: PeerName) {
        let top = self.votes.values().map(|v| v.promised.round.max(v.accepted.map_or(0, |(b, _)| b.round))).max();
        let b = Ballot { round: top.unwrap_or(0) + 1, proposer: me };
        self.mine(me).promised = b;
    }

    /// One round of reading the votes: promise, accept, decide. `me_owner` is who we are as
    /// a creator, `quorum` how many votes make a majority.
    pub fn think(&mut self, me: Owner, quorum: usize) -> Step {
        if let Some(d) = self.decided(quorum) {
            return Step::Decided(d.0, d.1);
        }
        let before = self.votes.get(&me.name).copied();
        let mine = *self.mine(me.name);
        // Promise the highest ballot a proposer has prepared in its own vote.
        let prepared = self.votes.values().filter(|v| v.name == v.promised.proposer).map(|v| v.promised).max();
        if let Some(b) = prepared.filter(|&b| b > mine.promised) {
            self.mine(me.name).promised = b;
        }
        let promised = self.mine(me.name).promised;
        if promised.round > 0 {
            if promised.proposer == me.name {
                // Our ballot: accept once a quorum promised it.
                let promisers: Vec<&Vote> = self.votes.values().filter(|v| v.promised == promised).collect();
                let accepted_here = self.votes[&me.name].accepted.is_some_and(|(b, _)| b == promised);
                if promisers.len() >= quorum && !accepted_here {
                    let value =
                        promisers.iter().filter_map(|v| v.accepted).max_by_key(|(b, _)| *b).map_or(me, |(_, o)| o);
                    self.mine(me.name).accepted = Some((promised, value));
                }
            } else if let Some(p) = self.votes.get(&promised.proposer).and_then(|v| v.accepted) {
                // The proposer accepted at the ballot we promised: so do we.
                if p.0 == promised && self.votes[&me.name].accepted != Some(p) {
                    self.mine(me.name).accepted = Some(p);
                }
            }
        }
        if let Some(d) = self.decided(quorum) {
            return Step::Decided(d.0, d.1);
        }
        if self.votes.get(&me.name).copied() != before {
            Step::Voted
        } else {
            Step::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owner(n: u8) -> Owner {
        Owner { name: PeerName([2, 0, 0, 0, 0, n]), life: u32::from(n) }
    }

    /// Peers that each think, then pass their own vote to the peers the schedule says.
    fn run(n: usize, schedule: &[(u8, u8, bool)]) -> Vec<Option<(Ballot, Owner)>> {
        let quorum = n / 2 + 1;
        let mut ps = vec![Paxos::default(); n];
        let mut decided = vec![None; n];
        for &(who, to, propose) in schedule {
            let (w, t) = (usize::from(who) % n, usize::from(to) % n);
            if propose && decided[w].is_none() {
                ps[w].propose(owner(w as u8).name);
            }
            if let Step::Decided(b, o) = ps[w].think(owner(w as u8), quorum) {
                if let Some((_, prev)) = decided[w] {
                    assert_eq!(prev, o, "a peer's decided value never changes");
                }
                decided[w] = Some((b, o));
            }
            let votes: Vec<Vote> = ps[w].votes.values().copied().collect();
            for v in votes {
                ps[t].merge(owner(t as u8).name, v);
            }
        }
        decided
    }

    #[test]
    fn one_proposer_decides_itself() {
        let mut s = vec![(0, 0, true)];
        for _ in 0..3 {
            for w in 0..3u8 {
                for t in 0..3u8 {
                    s.push((w, t, false));
                }
            }
        }
        let d = run(3, &s);
        assert!(d.iter().all(|x| x.map(|(_, o)| o) == Some(owner(0))), "{d:?}");
    }

    proptest! {
        #[test]
        fn no_two_peers_decide_differently(n in 1usize..6, schedule in proptest::collection::vec((any::<u8>(), any::<u8>(), proptest::bool::weighted(0.1)), 0..300)) {
            let d = run(n, &schedule);
            let values: std::collections::BTreeSet<Owner> = d.iter().flatten().map(|(_, o)| *o).collect();
            prop_assert!(values.len() <= 1, "decisions {:?}", d);
        }
    }
}
