//! The allocator's side of the agreed log ([`super::agreed`]): asking for blocks to be put to
//! use, proposing decrees, applying decisions, and finding peers gone for good.

use std::collections::BTreeSet;

use ipnet::Ipv4Net;

use super::agreed::{Agreed, Change, Decree, LogStep, DECREE_MAX, VOTERS_MAX};
use super::{Block, Ipam, Owner};
use crate::peer::PeerName;
use crate::time::Instant;

/// Most blocks one decree reclaims.
const RECLAIM_BLOCKS_MAX: usize = 2048;

impl Ipam {
    /// Whether the allocator puts blocks to use only by agreement (automatic reclaim is on).
    pub(super) fn gated(&self) -> bool {
        self.cfg.reclaim_after.is_some()
    }

    /// Whether we may hand out addresses from block `i`: we own it and, with automatic
    /// reclaim on, a decision put it to use at its current entry.
    pub(super) fn usable(&self, i: usize) -> bool {
        let Some(ring) = &self.ring else { return false };
        let b = ring.blocks[i];
        b.owner == self.me && (!self.gated() || self.agreed.as_ref().is_some_and(|a| a.is_active(i as u16, b)))
    }

    /// Whether we own a block in `subnet` that a decision could put to use.
    pub(super) fn activatable_in(&self, subnet: Ipv4Net) -> bool {
        self.activation_in(subnet).is_some()
    }

    fn activation_in(&self, subnet: Ipv4Net) -> Option<(u16, Block)> {
        let (ring, agreed) = (self.ring.as_ref()?, self.agreed.as_ref()?);
        ring.id
            .blocks_in(subnet)
            .find(|&i| ring.blocks[i].owner == self.me && agreed.may_activate(i as u16, ring.blocks[i]))
            .map(|i| (i as u16, ring.blocks[i]))
    }

    /// The block we ask to put to use: the one we asked for while it can still be granted,
    /// else one holding an address the user chose, else one in a subnet an allocation waits
    /// in, else a spare in the default subnet when none of our active blocks there has room.
    pub(super) fn activation_request(&self) -> Option<(u16, Block)> {
        if !self.gated() {
            return None;
        }
        let (ring, agreed) = (self.ring.as_ref()?, self.agreed.as_ref()?);
        if let Some((i, e)) = self.infos.get(&self.me).and_then(|p| p.activate) {
            if ring.blocks.get(usize::from(i)) == Some(&e) && agreed.may_activate(i, e) {
                return Some((i, e));
            }
        }
        // A block with a lease but not in use by decision: an address the user chose (`claim`).
        let claimed = self
            .used
            .keys()
            .map(|&i| (i as u16, ring.blocks[i]))
            .find(|&(i, e)| e.owner == self.me && !agreed.is_active(i, e) && agreed.may_activate(i, e));
        let pending = || self.pending.iter().find_map(|p| self.activation_in(p.subnet));
        claimed.or_else(pending).or_else(|| {
            let d = self.cfg.default_subnet;
            let (len, span) = (ring.id.block_len(), ring.id.blocks_in(d));
            // Few blocks are in use: look among those rather than the whole ring.
            let room = agreed.active.iter().any(|(&i, b)| {
                let i = usize::from(i);
                span.contains(&i)
                    && b.owner == self.me
                    && ring.blocks[i] == *b
                    && self.used.get(&i).copied().unwrap_or(0) < len
            });
            if room {
                None
            } else {
                self.activation_in(d)
            }
        })
    }

    /// Owners whose space may be reclaimed now: earlier lives (of us, or retired by their
    /// successor) at once, others once unreachable for `reclaim_after`.
    fn gone(&self, now: Instant, reachable: &BTreeSet<PeerName>, candidates: &BTreeSet<Owner>) -> Vec<Owner> {
        let Some(grace) = self.cfg.reclaim_after else { return Vec::new() };
        candidates
            .iter()
            .copied()
            .filter(|o| {
                (reachable.contains(&o.name) && !self.alive(o, reachable))
                    || self.unreachable.get(o).is_some_and(|&since| now >= since + grace)
            })
            .collect()
    }

    /// Whether owner `o` looks alive: its peer is reachable and runs that life (as far as we
    /// know: an earlier life is retired by its successor).
    fn alive(&self, o: &Owner, reachable: &BTreeSet<PeerName>) -> bool {
        reachable.contains(&o.name)
            && !self.infos.get(o).is_some_and(|p| p.retired)
            && (o.name != self.me.name || *o == self.me)
    }

    /// Whether a majority of the voters are lives that have ended (their state was lost):
    /// no decision can be made any more, so no block can be put to use until the operator
    /// removes them (`weave rmpeer`).
    pub fn quorum_lost(&self) -> bool {
        let Some(a) = &self.agreed else { return false };
        a.voters.iter().filter(|o| !self.ended(o)).count() < a.quorum()
    }

    /// Whether life `o` has ended: an earlier life of ours, or one its successor retired.
    pub fn ended(&self, o: &Owner) -> bool {
        (o.name == self.me.name && *o != self.me) || self.infos.get(o).is_some_and(|p| p.retired)
    }

    /// Owners that hold space a reclaim could take, or a vote.
    fn candidates(&self) -> BTreeSet<Owner> {
        let (Some(ring), Some(agreed)) = (&self.ring, &self.agreed) else { return BTreeSet::new() };
        let mut c: BTreeSet<Owner> = agreed.voters.clone();
        let mut last = None;
        for (i, b) in ring.blocks.iter().enumerate() {
            // Owners hold runs of blocks: one insert per run.
            if last != Some(b.owner) && !agreed.active.contains_key(&(i as u16)) {
                c.insert(b.owner);
                last = Some(b.owner);
            }
        }
        c
    }

    /// What we would propose for the current slot.
    fn batch(&self, now: Instant, reachable: &BTreeSet<PeerName>, candidates: &BTreeSet<Owner>) -> Decree {
        let (ring, agreed) = (self.ring.as_ref().expect("a ring"), self.agreed.as_ref().expect("agreed"));
        let mut changes = Vec::new();
        for p in self.infos.values().filter(|p| !p.retired) {
            if let Some((block, entry)) = p.activate {
                if entry.owner == p.owner && usize::from(block) < ring.blocks.len() && agreed.may_activate(block, entry)
                {
                    changes.push(Change::Activate { block, entry });
                }
            }
        }
        let gone = self.gone(now, reachable, candidates);
        // A decree stays small enough for one message: the rest waits for the next slot.
        let mut room = RECLAIM_BLOCKS_MAX;
        for g in &gone {
            let blocks: Vec<u16> = (0..ring.blocks.len() as u16)
                .filter(|&i| ring.blocks[usize::from(i)].owner == *g && !agreed.active.contains_key(&i))
                .take(room)
                .collect();
            room -= blocks.len();
            if !blocks.is_empty() {
                changes.push(Change::Reclaim { gone: *g, to: self.me, blocks });
            }
        }
        changes.truncate(DECREE_MAX);
        let mut voters: BTreeSet<Owner> = agreed.voters.iter().filter(|o| !gone.contains(o)).copied().collect();
        let mut fill: Vec<Owner> = self
            .infos
            .values()
            .filter(|p| !p.retired && reachable.contains(&p.owner.name) && !gone.contains(&p.owner))
            .map(|p| p.owner)
            .collect();
        fill.sort();
        for o in fill {
            if voters.len() >= VOTERS_MAX {
                break;
            }
            if !voters.iter().any(|v| v.name == o.name) {
                voters.insert(o);
            }
        }
        Decree { changes, voters }
    }

    /// The agreed log's step: track unreachable owners, propose when we lead (or the slot
    /// stalls), vote, apply what is decided. Returns when to run again.
    pub(super) fn decide(&mut self, now: Instant, reachable: &BTreeSet<PeerName>) -> Option<Instant> {
        if !self.gated() || self.agreed.is_none() {
            return None;
        }
        let candidates = self.candidates();
        self.unreachable.retain(|o, _| candidates.contains(o) && !reachable.contains(&o.name));
        for o in candidates.iter().filter(|o| !reachable.contains(&o.name)) {
            self.unreachable.entry(*o).or_insert(now);
        }
        let me = self.me;
        let mut next = None;
        for _ in 0..16 {
            let agreed = self.agreed.as_ref().expect("checked above");
            let voter = agreed.voters.contains(&me);
            let batch = if voter { Some(self.batch(now, reachable, &candidates)) } else { None };
            let work = batch.as_ref().is_some_and(|d| !d.changes.is_empty() || d.voters != agreed.voters);
            let undecided = self.log.votes.keys().any(|(slot, _)| *slot == agreed.slot);
            next = None;
            if voter && (work || undecided) {
                let live: Vec<&Owner> = agreed.voters.iter().filter(|o| self.alive(o, reachable)).collect();
                let rank = live.iter().position(|o| **o == me).unwrap_or(0) as u32;
                let start = *self.slot_start.get_or_insert(now);
                let patience = start + self.cfg.paxos_retry * (rank + 1);
                let fresh = self.log.my_vote(me, agreed).is_none_or(|v| v.promised.round == 0);
                // A slot that stalls (its proposer gone, or duelling) is retried in rank order.
                if (work && rank == 0 && fresh) || now >= patience {
                    self.log.propose(me, agreed);
                    self.slot_start = Some(now);
                    self.voted();
                    next = Some(now + self.cfg.paxos_retry * (rank + 1));
                } else {
                    next = Some(patience);
                }
            }
            let agreed = self.agreed.as_ref().expect("checked above");
            let batch = batch.unwrap_or_else(|| Decree { changes: Vec::new(), voters: agreed.voters.clone() });
            let key = (agreed.slot, me);
            let before = self.log.votes.get(&key).cloned();
            let step = self.log.think(me, agreed, || batch);
            // Our vote may change on the way to a decision too: it goes out either way.
            if self.log.votes.get(&key) != before.as_ref() {
                self.voted();
            }
            match step {
                LogStep::Decided(d) => {
                    self.apply_decree(&d);
                    continue;
                }
                LogStep::Voted | LogStep::Idle => {}
            }
            break;
        }
        let grace = self.cfg.reclaim_after.expect("gated");
        let expiry = self.unreachable.values().map(|&t| t + grace).filter(|&t| t > now).min();
        next.into_iter().chain(expiry).min()
    }

    /// Applies a decided decree: the ring takes its reclaims' entries.
    fn apply_decree(&mut self, d: &Decree) {
        let agreed = self.agreed.as_mut().expect("deciding needs agreed state");
        let writes = agreed.apply(d);
        let slot = agreed.slot;
        self.log.advance(slot);
        self.slot_start = None;
        // Peers count the flooded votes themselves, but one that missed a vote (a relay that
        // had moved on dropped it) would wait for ever: the new state floods too.
        self.dirty_agreed = true;
        self.changed = true;
        self.take_entries(&writes);
        self.stats.blocks_reclaimed += writes.iter().filter(|(_, b)| b.owner == self.me).count() as u64;
        for c in &d.changes {
            if let Change::Reclaim { gone, to, blocks } = c {
                tracing::info!(%gone, %to, blocks = blocks.len(), "reclaimed the space of a peer gone for good");
            }
        }
    }

    /// Merges ring entries that agreement wrote (reclaims).
    pub(super) fn take_entries(&mut self, writes: &[(u16, Block)]) {
        let Some(ring) = self.ring.as_mut() else { return };
        let mut lost = false;
        for &(i, b) in writes {
            let was_mine = ring.blocks.get(usize::from(i)).is_some_and(|c| c.owner == self.me);
            if ring.merge_block(usize::from(i), b) {
                self.dirty_blocks.insert(i);
                self.changed = true;
                if b.owner == self.me && !was_mine {
                    self.stats.blocks_received += 1;
                }
                lost |= was_mine && b.owner != self.me;
            }
        }
        if lost {
            self.count_conflicts();
        }
    }

    /// Adopts another peer's agreed state when it has decided more slots than ours.
    pub(super) fn merge_agreed(&mut self, theirs: &Agreed) -> bool {
        // States order by slot first. Two states of one slot differ only when operators removed
        // voters on two peers at once: every peer keeps the greater, so they still converge.
        if theirs.voters.is_empty() || self.agreed.as_ref().is_some_and(|a| a >= theirs) {
            return false;
        }
        self.agreed = Some(theirs.clone());
        self.log.advance(theirs.slot);
        self.slot_start = None;
        self.dirty_agreed = true;
        self.changed = true;
        let writes: Vec<(u16, Block)> = theirs.taken.iter().map(|(i, b)| (*i, *b)).collect();
        self.take_entries(&writes);
        true
    }

    /// Removes `lives` from the voters without a decision (the operator's word that they are
    /// gone for good: `weave rmpeer`), seating us instead: a new agreed state one slot on,
    /// which outranks the stalled slot. Run on one peer only.
    pub(super) fn unseat(&mut self, lives: &BTreeSet<Owner>) {
        let me = self.me;
        let Some(a) = self.agreed.as_mut() else { return };
        if !a.voters.iter().any(|v| lives.contains(v)) {
            return;
        }
        a.voters.retain(|v| !lives.contains(v));
        a.voters.insert(me);
        a.slot += 1;
        let slot = a.slot;
        self.log.advance(slot);
        self.slot_start = None;
        self.dirty_agreed = true;
        self.changed = true;
        tracing::warn!(removed = lives.len(), slot, "voters removed by the operator");
    }

    /// Our vote changed: gossip it (with `write_ahead`, once the state holding it is saved).
    fn voted(&mut self) {
        self.changed = true;
        let slot = self.agreed.as_ref().map_or(0, |a| a.slot);
        if let Some(v) = self.log.votes.get(&(slot, self.me)) {
            self.my_out.insert(slot, v.clone());
        }
        if self.cfg.write_ahead {
            self.vote_unsaved = Some(self.gen + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use core::time::Duration;

    use crate::ipam::testnet::Net;
    use crate::ipam::{Ipam, IpamConfig};

    fn net(range: &str) -> Net {
        let mut cfg = IpamConfig::new(range.parse().unwrap());
        cfg.init_peers = 3;
        cfg.reclaim_after = Some(Duration::from_secs(60));
        Net::with(cfg, 3)
    }

    /// No address is leased by two peers, and each lease lies in a block its holder owns in
    /// every peer's ring.
    fn assert_unique(peers: &[Ipam]) {
        let mut seen: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for (k, p) in peers.iter().enumerate() {
            for a in p.leases().keys() {
                assert_eq!(seen.insert(*a, k), None, "{a} leased twice");
                for q in peers {
                    assert_eq!(q.ring().unwrap().owner_of(*a), Some(p.owner()), "{a} in another's block");
                }
            }
        }
    }

    #[test]
    fn a_peer_gone_for_good_loses_the_space_it_does_not_use_after_the_grace_period() {
        let mut net = net("10.32.0.0/16");
        let now = net.now;
        let held = net.peers[2].allocate(now, "c", None).unwrap().expect("a spare block is active").addr();
        let gone = net.peers[2].owner();
        let blocks = |net: &Net| net.peers[0].ring().unwrap().owners().get(&gone).copied().unwrap_or(0);
        let before = blocks(&net);
        assert!(before > 1, "{before}");
        // Peer 3 stops for good; the grace period runs.
        net.run_parts(&[vec![0, 1]], 59);
        assert_eq!(blocks(&net), before, "nothing is taken before the grace period ends");
        net.run_parts(&[vec![0, 1]], 2);
        assert_eq!(blocks(&net), 1, "all but the block in use is reclaimed");
        let a = net.peers[0].agreed().unwrap();
        assert!(!a.voters.contains(&gone), "the gone peer no longer votes: {:?}", a.voters);
        assert_eq!(net.peers[1].agreed(), Some(a), "both agree");
        assert_eq!(net.peers[0].ring(), net.peers[1].ring());
        // Its space serves the living: an address in a subnet that was all peer 3's.
        let ring = net.peers[0].ring().unwrap().clone();
        let taken = (0..ring.blocks.len()).rev().find(|&i| a.taken.contains_key(&(i as u16))).unwrap();
        let subnet = ipnet::Ipv4Net::new(Ipv4Addr::from(ring.id.block_start(taken)), 22).unwrap().trunc();
        let now = net.now;
        let got = net.peers[1].allocate(now, "d", Some(subnet)).unwrap();
        let got = match got {
            Some(g) => g,
            None => {
                net.run_parts(&[vec![0, 1]], 10);
                net.peers[1].poll_allocated().expect("answered").result.unwrap()
            }
        };
        assert!(subnet.contains(&got.addr()));
        // Peer 3 comes back: it keeps the address it handed out, and nothing is held twice.
        net.exchange(3);
        net.run_parts(&[vec![0, 1, 2]], 5);
        assert!(net.peers[2].leases().contains_key(&held));
        assert_unique(&net.peers);
        assert_eq!(net.peers[2].stats.conflicts, 0);
    }

    #[test]
    fn a_minority_keeps_allocating_in_its_active_blocks_and_never_takes_another() {
        let mut net = net("10.32.0.0/22");
        let (mut here, mut there) = (Vec::new(), Vec::new());
        let parts = [vec![0, 1], vec![2]];
        for round in 0..8 {
            for k in 0..16 {
                let now = net.now;
                let target = format!("t{round}-{k}");
                if let Ok(Some(a)) = net.peers[2].allocate(now, &target, None) {
                    there.push(a.addr());
                }
                if let Ok(Some(a)) = net.peers[0].allocate(now, &target, None) {
                    here.push(a.addr());
                }
            }
            net.run_parts(&parts, 20);
            while let Some(a) = net.peers[0].poll_allocated() {
                here.extend(a.result.ok().map(|a| a.addr()));
            }
            while let Some(a) = net.peers[2].poll_allocated() {
                there.extend(a.result.ok().map(|a| a.addr()));
            }
        }
        // The lone peer filled the block it had in use and got no other; the majority
        // reclaimed the rest of its space and used it.
        assert!(!there.is_empty() && there.len() <= 16, "{}", there.len());
        let lone = net.peers[2].owner();
        assert!(net.peers[0].ring().unwrap().owners().get(&lone).copied().unwrap_or(0) <= 1);
        assert!(here.len() > 64, "{}", here.len());
        net.exchange(3);
        net.run_parts(&[vec![0, 1, 2]], 5);
        assert_unique(&net.peers);
        assert!(there.iter().all(|a| net.peers[2].leases().contains_key(a)));
    }

    #[test]
    fn an_address_the_user_chose_puts_its_block_to_use() {
        let mut net = net("10.32.0.0/16");
        let me = net.peers[1].owner();
        let ring = net.peers[1].ring().unwrap().clone();
        let a = net.peers[1].agreed().unwrap().clone();
        let i = (0..ring.blocks.len()).rev().find(|&i| ring.blocks[i].owner == me).unwrap();
        assert!(!a.is_active(i as u16, ring.blocks[i]), "the highest block is not the spare");
        let addr = ipnet::Ipv4Net::new(Ipv4Addr::from(ring.id.block_start(i) + 5), 16).unwrap();
        assert_eq!(net.peers[1].claim("mine", addr), Ok(true));
        net.run_parts(&[vec![0, 1, 2]], 1);
        assert!(net.peers[0].agreed().unwrap().is_active(i as u16, ring.blocks[i]), "decided for everyone");
    }

    #[test]
    fn a_wiped_restart_s_earlier_life_is_reclaimed_without_waiting() {
        let mut net = net("10.32.0.0/16");
        let old = net.peers[0].owner();
        let cfg = net.peers[0].config().clone();
        net.peers[0] = Ipam::new(cfg, crate::ipam::Owner { name: old.name, life: 77 }, None).unwrap();
        net.exchange(3);
        net.run_parts(&[vec![0, 1, 2]], 4);
        let owners = net.peers[1].ring().unwrap().owners();
        assert!(owners.get(&old).copied().unwrap_or(0) <= 1, "{owners:?}");
        assert!(!net.peers[1].agreed().unwrap().voters.contains(&old));
        assert!(net.peers[1].agreed().unwrap().voters.contains(&net.peers[0].owner()), "the new life votes");
    }
}
