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

    /// Frees every address `target` holds (and its waiting allocations); returns them.
    pub fn release(&mut self, target: &str) -> Vec<Ipv4Addr> {
        self.pending.retain(|p| p.target != target);
        let gone: Vec<Ipv4Addr> = self.leases.iter().filter(|(_, l)| l.target == target).map(|(a, _)| *a).collect();
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
        let found = ring.id.blocks_in(subnet).filter(|&i| ring.blocks[i].owner == self.me).find_map(|i| {
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
                    if self.quiet_until.is_none_or(|t| now >= t) {
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

    /// Our blocks in `subnet` with no address in use.
    fn free_blocks_in(&self, subnet: Ipv4Net) -> Vec<usize> {
        let Some(ring) = &self.ring else { return Vec::new() };
        ring.id.blocks_in(subnet).filter(|&i| ring.blocks[i].owner == self.me && !self.used.contains_key(&i)).collect()
    }

    /// Answers other peers' wants: the richest reachable peer (most free blocks, then lowest
    /// name) gives at once, any peer with free blocks after `donate_delay`. A giver hands
    /// over half its free blocks in the wanted subnet (at least one), and gives the same peer
    /// more only once twice `donate_delay` has passed (its gift had time to arrive). Returns
    /// when a waiting want turns answerable.
    pub(super) fn donate(&mut self, now: Instant, reachable: &BTreeSet<PeerName>) -> Option<Instant> {
        let live = |o: &Owner| reachable.contains(&o.name);
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
            let ring = self.ring.as_mut().expect("free blocks imply a ring");
            // The highest blocks go: a giver keeps its low, already used neighbourhood.
            for &i in free.iter().rev().take(count) {
                if ring.give(i, self.me, to) {
                    self.dirty_blocks.insert(i as u16);
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
