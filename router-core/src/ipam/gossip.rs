//! The allocator's gossip: the whole state for a new neighbour, what changed for the others,
//! and merging what a neighbour sent.

use super::{Agreed, Block, ForeignRing, Ipam, PeerInfo, Ring, SlotVote, INFOS_MAX};
use crate::time::Instant;
use crate::wire::ipam::IpamUpdate;

impl Ipam {
    /// The agreed state we may send (held back until saved when we created it).
    fn sendable_agreed(&self) -> Option<Agreed> {
        self.agreed.clone().filter(|_| self.agreed_unsaved.is_none())
    }

    /// The whole state, for a new connection.
    pub fn full_update(&self) -> IpamUpdate {
        let ring = self.ring.as_ref();
        let mine_saved = self.vote_unsaved.is_none();
        IpamUpdate {
            agreed: self.sendable_agreed(),
            slot_votes: self.log.votes.values().filter(|v| v.voter != self.me || mine_saved).cloned().collect(),
            range: self.cfg.range,
            votes: if ring.is_some() { Vec::new() } else { self.paxos.votes.values().copied().collect() },
            ring: ring.map(|r| r.id),
            blocks: ring.map_or_else(Vec::new, |r| {
                let shown = |i: usize, b: &Block| self.unsaved.get(&(i as u16)).map_or(*b, |(_, before)| *before);
                r.blocks.iter().enumerate().map(|(i, b)| (i as u16, shown(i, b))).collect()
            }),
            infos: self.infos.values().copied().collect(),
        }
    }

    /// What changed since the last call, if anything.
    pub fn take_delta(&mut self) -> Option<IpamUpdate> {
        let agreed = self.sendable_agreed().filter(|_| self.dirty_agreed);
        if agreed.is_some() {
            self.dirty_agreed = false;
        }
        let mut slot_votes: Vec<SlotVote> = core::mem::take(&mut self.forward).into_values().collect();
        if self.vote_unsaved.is_none() {
            slot_votes.extend(core::mem::take(&mut self.my_out).into_values());
        }
        if self.dirty_votes.is_empty()
            && self.dirty_blocks.is_empty()
            && self.dirty_infos.is_empty()
            && agreed.is_none()
            && slot_votes.is_empty()
        {
            return None;
        }
        let votes = core::mem::take(&mut self.dirty_votes);
        let blocks = core::mem::take(&mut self.dirty_blocks);
        let infos = core::mem::take(&mut self.dirty_infos);
        let ring = self.ring.as_ref();
        Some(IpamUpdate {
            agreed,
            slot_votes,
            range: self.cfg.range,
            votes: if ring.is_some() {
                Vec::new()
            } else {
                votes.iter().filter_map(|n| self.paxos.votes.get(n).copied()).collect()
            },
            ring: ring.map(|r| r.id),
            blocks: ring.map_or_else(Vec::new, |r| blocks.iter().map(|&i| (i, r.blocks[usize::from(i)])).collect()),
            infos: infos.iter().filter_map(|o| self.infos.get(o).copied()).collect(),
        })
    }

    /// Merges what a peer sent. Returns whether anything we hold changed (so there is work
    /// for [`Ipam::think`]); an update from another ring or range changes nothing (it is
    /// reported in [`Ipam::foreign`] and otherwise ignored).
    pub fn merge(&mut self, now: Instant, u: &IpamUpdate) -> bool {
        if u.range != self.cfg.range || matches!((&self.ring, u.ring), (Some(r), Some(g)) if r.id != g) {
            self.stats.foreign_updates += 1;
            let f = ForeignRing { range: u.range, creator: u.ring.map(|g| g.creator) };
            if self.foreign.insert(f.clone()) {
                tracing::warn!(range = %f.range, creator = ?f.creator, "met peers of another address ring; the two are never merged");
            }
            return false;
        }
        let mut changed = false;
        if self.ring.is_none() {
            if let Some(g) = u.ring {
                self.adopt(now, Ring::new(g));
                changed = true;
            }
        }
        if self.ring.is_none() {
            for &v in &u.votes {
                if self.paxos.votes.len() >= INFOS_MAX && !self.paxos.votes.contains_key(&v.name) {
                    self.stats.infos_dropped += 1;
                    continue;
                }
                if self.paxos.merge(self.me.name, v) {
                    self.dirty_votes.insert(v.name);
                    changed = true;
                }
            }
        }
        if let Some(ring) = self.ring.as_mut() {
            let mut lost = false;
            for &(i, b) in &u.blocks {
                let was_mine = ring.blocks[usize::from(i)].owner == self.me;
                if ring.merge_block(usize::from(i), b) {
                    self.dirty_blocks.insert(i);
                    self.changed = true;
                    changed = true;
                    let mine = b.owner == self.me;
                    if mine && !was_mine {
                        self.stats.blocks_received += 1;
                    }
                    lost |= was_mine && !mine;
                }
            }
            if lost {
                self.count_conflicts();
            }
            if let Some(a) = &u.agreed {
                changed |= self.merge_agreed(a);
            }
            let slot = self.agreed.as_ref().map_or(0, |a| a.slot);
            for v in &u.slot_votes {
                if self.log.votes.len() >= INFOS_MAX && !self.log.votes.contains_key(&(v.slot, v.voter)) {
                    self.stats.infos_dropped += 1;
                    continue;
                }
                if self.log.merge(self.me, slot, v.clone()) {
                    self.forward.insert((v.slot, v.voter), v.clone());
                    changed = true;
                }
            }
        }
        for &p in &u.infos {
            if p.owner == self.me {
                // A copy of ours newer than ours: an older state of ours was restored.
                // Move past it, so our next change wins.
                let mine = self.infos.get_mut(&self.me).expect("our own info");
                if p.version > mine.version {
                    mine.version = p.version + 1;
                    self.dirty_infos.insert(self.me);
                    changed = true;
                }
                continue;
            }
            match self.infos.get(&p.owner) {
                Some(cur) if cur.version >= p.version => {}
                None if self.infos.len() >= INFOS_MAX => self.stats.infos_dropped += 1,
                _ => {
                    // An earlier life of ours: it has ended, and we say so for it.
                    let p = if p.owner.name == self.me.name && !p.retired {
                        PeerInfo {
                            version: p.version + 1,
                            want: None,
                            free_blocks: 0,
                            retired: true,
                            activate: None,
                            ..p
                        }
                    } else {
                        p
                    };
                    self.infos.insert(p.owner, p);
                    self.dirty_infos.insert(p.owner);
                    changed = true;
                }
            }
        }
        changed
    }
}
