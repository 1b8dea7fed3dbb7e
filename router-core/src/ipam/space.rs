//! Handing out addresses from our blocks, asking for space, and giving it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Allocated, Ipam, IpamError, Lease, Owner, Pending, PENDING_MAX, TARGET_MAX};
use crate::peer::PeerName;
use crate::time::Instant;

/// The addresses of `subnet` a container may hold: all but its network and broadcast
/// addresses (a /31 or /32 has none).
fn hosts(subnet: Ipv4Net) -> Option<(u32, u32)> {
    (subnet.prefix_len() <= 30).then(|| (u32::from(subnet.network()) + 1, u32::from(subnet.broadcast()) - 1))
}

impl Ipam {
    fn check_subnet(&self, subnet: Option<Ipv4Net>) -> Result<Ipv4Net, IpamError> {
        let subnet = subnet.map_or(self.cfg.default_subnet, |s| s.trunc());
        if !self.cfg.range.contains(&subnet) {
            return Err(IpamError::OutsideRange { subnet, range: self.cfg.range });
        }
        if hosts(subnet).is_none() {
            return Err(IpamError::SubnetTooSmall(subnet));
        }
        Ok(subnet)
    }

    /// The address `target` holds in `subnet`, if any.
    pub fn lookup(&self, target: &str, subnet: Ipv4Net) -> Option<Ipv4Addr> {
        self.leases.iter().find(|(_, l)| l.target == target && l.subnet == subnet).map(|(a, _)| *a)
    }

    /// An address for `target` in `subnet` (the default subnet when `None`): the one it
    /// already holds there, or a free one from our blocks. `Ok(None)`: none is free here
    /// yet; the result comes later from [`Ipam::poll_allocated`] (ask [`Ipam::think`] to run).
    pub fn allocate(
        &mut self,
        now: Instant,
        target: &str,
        subnet: Option<Ipv4Net>,
    ) -> Result<Option<Ipv4Net>, IpamError> {
        if target.is_empty() || target.len() > TARGET_MAX {
            return Err(IpamError::BadTarget);
        }
        let subnet = self.check_subnet(subnet)?;
        if let Some(a) = self.lookup(target, subnet) {
            return Ok(Some(with_prefix(a, subnet)));
        }
        if let Some(a) = self.take_free(target, subnet) {
            return Ok(Some(a));
        }
        if self.pending.iter().any(|p| p.target == target && p.subnet == subnet) {
            return Ok(None);
        }
        if self.pending.len() >= PENDING_MAX {
            return Err(IpamError::Busy);
        }
        self.pending.push(Pending { target: target.to_owned(), subnet, deadline: now + self.cfg.alloc_timeout });
        Ok(None)
    }

    /// Records that `target` uses `addr` (an address the user chose, or one found on a
    /// running container at start). `Ok(false)`: the address is outside the range, not ours
    /// to track. Refused when the address is in another peer's block or held by another.
    pub fn claim(&mut self, target: &str, addr: Ipv4Net) -> Result<bool, IpamError> {
        if target.is_empty() || target.len() > TARGET_MAX {
            return Err(IpamError::BadTarget);
        }
        let ip = addr.addr();
        if !self.cfg.range.contains(&ip) {
            return Ok(false);
        }
        let Some(ring) = &self.ring else { return Err(IpamError::NotReady(self.cfg.init_peers)) };
        let owner = ring.owner_of(ip).expect("inside the range");
        if owner != self.me {
            return Err(IpamError::OwnedElsewhere { addr: ip, owner });
        }
        match self.leases.get(&ip) {
            Some(l) if l.target == target => Ok(true),
            Some(l) => Err(IpamError::InUse { addr: ip, target: l.target.clone() }),
            None => {
                self.lease(ip, target, addr.trunc());
                Ok(true)
            }
        }
    }

    /// Frees the addresses `target` holds (all of them, and its waiting allocations, when
    /// `only` is `None`); returns those freed.
    pub fn release(&mut self, target: &str, only: Option<&[Ipv4Addr]>) -> Vec<Ipv4Addr> {
        if only.is_none() {
            self.pending.retain(|p| p.target != target);
        }
        let gone: Vec<Ipv4Addr> = self
            .leases
            .iter()
            .filter(|(a, l)| l.target == target && only.is_none_or(|o| o.contains(a)))
            .map(|(a, _)| *a)
            .collect();
        for a in &gone {
            self.leases.remove(a);
            if let Some(i) = self.ring.as_ref().and_then(|r| r.id.block_of(*a)) {
                if let Some(u) = self.used.get_mut(&i) {
                    *u -= 1;
                    if *u == 0 {
                        self.used.remove(&i);
                    }
                }
            }
            self.stats.freed += 1;
        }
        if !gone.is_empty() {
            self.changed = true;
            self.publish(None);
        }
        gone
    }

    /// Takes over every block any life of `peer` owns, and its seats among the voters (the
    /// operator's word that it is gone for good); returns how many blocks. For a peer we
    /// reach, only its ended lives (their state lost) are taken; refused for ourselves, and
    /// for a reachable peer with no ended life.
    pub fn take_over(&mut self, peer: PeerName, reachable: &BTreeSet<PeerName>) -> Result<usize, IpamError> {
        if peer == self.me.name {
            return Err(IpamError::TakeOverSelf);
        }
        let live = reachable.contains(&peer);
        let ended = |o: &Owner| self.infos.get(o).is_some_and(|p| p.retired);
        let lives: BTreeSet<Owner> = self
            .ring
            .iter()
            .flat_map(|r| r.blocks.iter().map(|b| b.owner))
            .chain(self.agreed.iter().flat_map(|a| a.voters.iter().copied()))
            .chain(self.infos.keys().copied())
            .filter(|o| o.name == peer && (!live || ended(o)))
            .collect();
        if live && lives.is_empty() {
            return Err(IpamError::TakeOverLive(peer));
        }
        let me = self.me;
        let blocks = self.ring.as_ref().ok_or(IpamError::NotReady(self.cfg.init_peers))?.blocks.len();
        let mut n = 0;
        for i in 0..blocks {
            let ring = self.ring.as_mut().expect("checked above");
            let before = ring.blocks[i];
            if lives.contains(&before.owner) && ring.give(i, before.owner, me) {
                self.wrote(i, before);
                n += 1;
            }
        }
        self.unseat(&lives);
        self.infos.retain(|o, _| !lives.contains(o));
        self.wants.retain(|o, _| !lives.contains(o));
        self.stats.blocks_received += n as u64;
        self.changed = true;
        self.publish(None);
        Ok(n)
    }

    /// Leaves the network for good (`weave reset`): forgets every lease and waiting
    /// allocation, and hands every block we own to the reachable peers, evenly. Returns the
    /// blocks handed over (none when no other peer is reachable: then the space stays with
    /// this life until `weave rmpeer`).
    pub fn leave(&mut self, reachable: &BTreeSet<PeerName>) -> usize {
        self.leases.clear();
        self.used.clear();
        self.pending.clear();
        let me = self.me;
        let mut heirs: Vec<Owner> = Vec::new();
        for o in self.infos.keys().rev() {
            if o.name != me.name && reachable.contains(&o.name) && !heirs.iter().any(|h| h.name == o.name) {
                heirs.push(*o);
            }
        }
        heirs.sort();
        let Some(blocks) = self.ring.as_ref().map(|r| r.blocks.len()) else { return 0 };
        if heirs.is_empty() {
            return 0;
        }
        let mut n = 0;
        for i in 0..blocks {
            let ring = self.ring.as_mut().expect("checked above");
            let before = ring.blocks[i];
            if before.owner == me && ring.give(i, me, heirs[n % heirs.len()]) {
                self.wrote(i, before);
                n += 1;
            }
        }
        self.stats.blocks_given += n as u64;
        self.changed = true;
        self.publish(None);
        n
    }

    fn lease(&mut self, a: Ipv4Addr, target: &str, subnet: Ipv4Net) {
        self.leases.insert(a, Lease { target: target.to_owned(), subnet });
        if let Some(i) = self.ring.as_ref().and_then(|r| r.id.block_of(a)) {
            *self.used.entry(i).or_insert(0) += 1;
        }
        self.stats.allocated += 1;
        self.changed = true;
    }

    /// The lowest free address of `subnet` in our blocks, leased to `target`.
    fn take_free(&mut self, target: &str, subnet: Ipv4Net) -> Option<Ipv4Net> {
        let ring = self.ring.as_ref()?;
        let (lo, hi) = hosts(subnet)?;
        let len = ring.id.block_len();
        let found = ring.id.blocks_in(subnet).filter(|&i| self.usable(i)).find_map(|i| {
            if self.used.get(&i).copied().unwrap_or(0) >= len {
                return None;
            }
            let start = ring.id.block_start(i);
            (start.max(lo)..=(start + (len - 1)).min(hi)).map(Ipv4Addr::from).find(|a| !self.leases.contains_key(a))
        })?;
        self.lease(found, target, subnet);
        self.publish(None);
        Some(with_prefix(found, subnet))
    }

    /// Serves waiting allocations from our space; fails those past their deadline; keeps
    /// our want up to date.
    pub(super) fn serve_pending(&mut self, now: Instant) {
        let mut want = None;
        for p in core::mem::take(&mut self.pending) {
            let result = match self.take_free(&p.target, p.subnet) {
                Some(a) => Ok(a),
                None if now >= p.deadline => Err(IpamError::Exhausted(p.subnet)),
                None => {
                    // A block of ours there that a decision can put to use is on its way.
                    if self.quiet_until.is_none_or(|t| now >= t) && !self.activatable_in(p.subnet) {
                        want = want.or(Some(p.subnet));
                    }
                    self.pending.push(p);
                    continue;
                }
            };
            self.done.push_back(Allocated { target: p.target, subnet: p.subnet, result });
        }
        self.publish(Some(want));
    }

    /// Our blocks in `subnet` with no address in use (but for one we ask to put to use).
    fn free_blocks_in(&self, subnet: Ipv4Net) -> Vec<usize> {
        let Some(ring) = &self.ring else { return Vec::new() };
        let asked = self.infos.get(&self.me).and_then(|p| p.activate).map(|(i, _)| usize::from(i));
        ring.id
            .blocks_in(subnet)
            .filter(|&i| ring.blocks[i].owner == self.me && !self.used.contains_key(&i) && Some(i) != asked)
            .collect()
    }

    /// Answers other peers' wants: the richest reachable peer (most free blocks, then lowest
    /// name) gives at once, any peer with free blocks after `donate_delay`. A giver hands
    /// over half its free blocks in the wanted subnet (at least one), and gives the same peer
    /// more only once twice `donate_delay` has passed (its gift had time to arrive). Returns
    /// when a waiting want turns answerable.
    pub(super) fn donate(&mut self, now: Instant, reachable: &BTreeSet<PeerName>) -> Option<Instant> {
        let infos = &self.infos;
        let live = |o: &Owner| reachable.contains(&o.name) && !infos.get(o).is_some_and(|p| p.retired);
        let richest = self
            .infos
            .values()
            .filter(|p| live(&p.owner) && p.free_blocks > 0)
            .max_by_key(|p| (p.free_blocks, core::cmp::Reverse(p.owner)));
        let richest = richest.map(|p| p.owner);
        let wanting: Vec<(Owner, Ipv4Net)> = self
            .infos
            .values()
            .filter(|p| p.owner != self.me && live(&p.owner))
            .filter_map(|p| p.want.map(|w| (p.owner, w)))
            .collect();
        self.wants.retain(|o, _| wanting.iter().any(|w| w.0 == *o));
        let mut next = None::<Instant>;
        for (to, subnet) in wanting {
            let since = match self.wants.get(&to) {
                Some(&(s, t)) if s == subnet => t,
                _ => {
                    self.wants.insert(to, (subnet, now));
                    now
                }
            };
            if let Some(&at) = self.gave.get(&to) {
                let again = at + self.cfg.donate_delay * 2;
                if now < again {
                    next = Some(next.map_or(again, |n| n.min(again)));
                    continue;
                }
            }
            let free = self.free_blocks_in(subnet);
            if free.is_empty() {
                continue;
            }
            let due = since + self.cfg.donate_delay;
            if richest != Some(self.me) && now < due {
                next = Some(next.map_or(due, |n| n.min(due)));
                continue;
            }
            let count = (free.len() / 2).max(1);
            // The highest blocks go: a giver keeps its low, already used neighbourhood.
            for &i in free.iter().rev().take(count) {
                let ring = self.ring.as_mut().expect("free blocks imply a ring");
                let before = ring.blocks[i];
                if ring.give(i, self.me, to) {
                    self.wrote(i, before);
                    self.stats.blocks_given += 1;
                }
            }
            tracing::debug!(%to, blocks = count, %subnet, "gave address space");
            self.gave.insert(to, now);
            self.changed = true;
        }
        self.gave.retain(|o, _| self.wants.contains_key(o));
        next
    }
}

fn with_prefix(a: Ipv4Addr, subnet: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new(a, subnet.prefix_len()).expect("prefix of a valid subnet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::testnet::{owner, Net};
    use crate::ipam::{Ipam, IpamConfig, Owner};
    use core::time::Duration;

    #[test]
    fn peers_agree_share_out_and_answer_a_want_in_another_owners_subnet() {
        let mut net = Net::new("10.32.0.0/12");
        let rings: Vec<_> = net.peers.iter().map(|p| p.ring().cloned()).collect();
        assert!(rings[0].is_some() && rings.iter().all(|r| *r == rings[0]), "one ring everywhere");
        let owners = rings[0].as_ref().unwrap().owners();
        assert_eq!(owners.len(), 3, "shared out among the three: {owners:?}");
        // Peer 3 asks in a subnet whose block another peer owns.
        let subnet: Ipv4Net = "10.32.0.0/24".parse().unwrap();
        assert_ne!(rings[0].as_ref().unwrap().owner_of(subnet.network()), Some(owner(3)));
        let now = net.now;
        assert_eq!(net.peers[2].allocate(now, "c", Some(subnet)), Ok(None), "waits for space");
        net.settle();
        net.now += Duration::from_secs(3);
        net.settle();
        let done = net.peers[2].poll_allocated().expect("answered once space came");
        assert_eq!(done.result, Ok("10.32.0.1/24".parse().unwrap()));
        // No address is held twice, and every block still has exactly one owner.
        let leased: Vec<Ipv4Addr> = net.peers.iter().flat_map(|p| p.leases().keys().copied()).collect();
        let unique: BTreeSet<_> = leased.iter().collect();
        assert_eq!(unique.len(), leased.len());
    }

    #[test]
    fn a_peer_that_joins_after_the_agreement_borrows_space_in_any_subnet() {
        let mut net = Net::starting("10.32.0.0/12", 2);
        let owners = net.peers[0].ring().unwrap().owners();
        assert_eq!(owners.len(), 2, "shared out among the two that agreed: {owners:?}");
        assert_eq!(net.peers[2].ring(), net.peers[0].ring(), "the late peer adopts the ring");
        for subnet in ["10.40.0.0/24", "10.33.0.0/24"] {
            let now = net.now;
            assert_eq!(net.peers[2].allocate(now, subnet, Some(subnet.parse().unwrap())), Ok(None));
            for _ in 0..4 {
                net.settle();
                net.now += Duration::from_secs(1);
            }
            let done = net.peers[2].poll_allocated().expect("answered");
            assert!(done.result.is_ok(), "{subnet}: {done:?}");
        }
    }

    #[test]
    fn a_leaving_peer_hands_its_space_to_the_others() {
        let mut net = Net::new("10.32.0.0/16");
        let now = net.now;
        assert!(matches!(net.peers[0].allocate(now, "a", None), Ok(Some(_))));
        let reach: BTreeSet<PeerName> = (1..=3).map(|n| owner(n).name).collect();
        let mine = net.peers[0].ring().unwrap().owners()[&owner(1)];
        assert_eq!(net.peers[0].leave(&reach), mine);
        assert!(net.peers[0].leases().is_empty());
        net.settle();
        let owners = net.peers[1].ring().unwrap().owners();
        assert!(!owners.contains_key(&owner(1)) && owners.len() == 2, "{owners:?}");
    }

    #[test]
    fn with_write_ahead_a_hand_over_leaves_only_once_saved() {
        let mut net = Net::new("10.32.0.0/16");
        let p = &mut net.peers[0];
        p.cfg.write_ahead = true;
        let me = p.owner();
        let reach: BTreeSet<PeerName> = (1..=3).map(|n| owner(n).name).collect();
        let given = p.leave(&reach);
        assert!(given > 0);
        let delta = p.take_delta().expect("our info changed");
        assert!(delta.blocks.is_empty(), "no hand-over leaves before the state is saved");
        assert!(p
            .full_update()
            .blocks
            .iter()
            .all(|(i, b)| p.ring().unwrap().blocks[usize::from(*i)].owner != me || b.owner == me));
        assert!(
            p.full_update().blocks.iter().filter(|(_, b)| b.owner == me).count() == given,
            "a new neighbour sees the saved ring"
        );
        assert!(p.take_changed());
        let gen = p.generation();
        p.saved(gen);
        assert_eq!(p.take_delta().map(|d| d.blocks.len()), Some(given), "saved: the hand-overs go out");
    }

    #[test]
    fn a_wiped_restart_retires_its_earlier_life_which_then_wants_nothing() {
        let mut net = Net::new("10.32.0.0/16");
        let old = net.peers[0].owner();
        let now = net.now;
        let _ = net.peers[0].allocate(now, "a", None);
        let cfg = net.peers[0].config().clone();
        net.peers[0] = Ipam::new(cfg, Owner { name: old.name, life: old.life ^ 0xdead }, None).unwrap();
        net.exchange(3);
        net.settle();
        for p in &net.peers {
            let info = p.infos()[&old];
            assert!(info.retired && info.want.is_none() && info.free_blocks == 0, "{info:?}");
        }
        // The new life borrows from the others, never from its old life's space.
        let now = net.now;
        assert_eq!(net.peers[0].allocate(now, "b", None), Ok(None));
        for _ in 0..4 {
            net.settle();
            net.now += Duration::from_secs(1);
        }
        let got = net.peers[0].poll_allocated().expect("answered").result.expect("an address");
        assert_ne!(net.peers[0].ring().unwrap().owner_of(got.addr()), Some(old));
    }

    #[test]
    fn two_rings_that_meet_are_reported_and_never_merged() {
        let mut a = Net::new("10.32.0.0/16");
        let mut cfg = IpamConfig::new("10.32.0.0/16".parse().unwrap());
        cfg.init_peers = 1;
        let mut b = Ipam::new(cfg.clone(), owner(9), None).unwrap();
        b.think(Instant::ZERO, &[owner(9).name].into_iter().collect());
        assert_eq!(b.ring().map(|r| r.id.creator), Some(owner(9)), "a lone peer agrees with itself");
        let before = a.peers[0].ring().cloned();
        assert!(!a.peers[0].merge(a.now, &b.full_update()), "another ring is refused");
        assert_eq!(a.peers[0].ring().cloned(), before, "nothing of it is merged");
        assert_eq!(a.peers[0].foreign().first().and_then(|f| f.creator), Some(owner(9)));
        let mut other_range = Ipam::new(IpamConfig::new("10.50.0.0/16".parse().unwrap()), owner(8), None).unwrap();
        assert!(!a.peers[1].merge(a.now, &other_range.full_update()));
        assert!(!other_range.merge(a.now, &a.peers[1].full_update()));
        assert_eq!(a.peers[1].foreign().len(), 1);
    }

    #[test]
    fn the_network_and_broadcast_addresses_are_never_handed_out_and_exhaustion_is_reported() {
        let mut net = Net::new("10.9.0.0/28");
        let now = net.now;
        let mut got = Vec::new();
        for i in 0..16 {
            if let Ok(Some(a)) = net
                .peers
                .iter_mut()
                .find(|p| p.ring().is_some_and(|r| r.owners().contains_key(&p.owner())))
                .unwrap()
                .allocate(now, &format!("t{i}"), None)
            {
                got.push(a.addr());
            }
        }
        assert_eq!(got.len(), 14, "a /28 has 14 host addresses: {got:?}");
        assert!(!got.contains(&"10.9.0.0".parse().unwrap()) && !got.contains(&"10.9.0.15".parse().unwrap()));
        let p = &mut net.peers[0];
        let _ = p.allocate(now, "late", None);
        net.now += Duration::from_secs(31);
        net.settle();
        let failed = net.peers.iter_mut().find_map(|p| p.poll_allocated()).expect("the wait ends");
        assert_eq!(failed.result, Err(IpamError::Exhausted("10.9.0.0/28".parse().unwrap())));
    }
}
