//! The allocator as `weave status ipam`, `/metrics` and `weave report` show it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use core::time::Duration;

use super::{ForeignRing, Ipam, IpamStats, Lease, Owner};
use crate::peer::PeerName;
use crate::time::Instant;

/// The allocator as `weave status ipam` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpamStatus {
    /// The range.
    pub range: Ipv4Net,
    /// Where allocations without a subnet go.
    pub default_subnet: Ipv4Net,
    /// Us.
    pub me: Owner,
    /// The ring's creator, once agreed.
    pub creator: Option<Owner>,
    /// Before the ring: votes heard, and how many make a majority.
    pub votes: usize,
    /// A majority of the starting peers.
    pub quorum: usize,
    /// Every owner of space, or peer that published an info.
    pub owners: Vec<OwnerStatus>,
    /// Decisions applied since the ring was created.
    pub slot: u32,
    /// Who decides which blocks are put to use and what is reclaimed.
    pub voters: Vec<Owner>,
    /// A majority of the voters lost their state: no decision can be made until the operator
    /// removes them (`weave rmpeer`).
    pub quorum_lost: bool,
    /// How long an owner stays unreachable before its unused space is reclaimed (none: off).
    pub reclaim_after: Option<Duration>,
    /// Our leases.
    pub leases: Vec<(Ipv4Addr, Lease)>,
    /// Allocations waiting for space: target and subnet.
    pub pending: Vec<(String, Ipv4Net)>,
    /// Other rings met.
    pub foreign: Vec<ForeignRing>,
    /// Counters.
    pub stats: IpamStats,
}

/// One owner's space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerStatus {
    /// The owner.
    pub owner: Owner,
    /// Blocks it owns, in our copy of the ring.
    pub blocks: usize,
    /// Addresses in them.
    pub addresses: u64,
    /// Free addresses, as it last published (none: never heard).
    pub free: Option<u32>,
    /// Whether its peer is reachable now.
    pub reachable: bool,
    /// The subnet it asks for space in.
    pub want: Option<Ipv4Net>,
    /// Its blocks put to use by a decision (these are never reclaimed automatically).
    pub active: usize,
    /// Unreachable: how long until the voters may reclaim its unused space (zero: due now).
    pub reclaim_in: Option<Duration>,
    /// Its space as address ranges (first, last), adjacent blocks joined.
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl Ipam {
    /// A snapshot for status at `now`, `reachable` being the peers we reach (us included).
    pub fn status(&self, now: Instant, reachable: &BTreeSet<PeerName>) -> IpamStatus {
        let mut owners: BTreeMap<Owner, OwnerStatus> = BTreeMap::new();
        let grace = self.cfg.reclaim_after;
        let blank = |o: Owner| OwnerStatus {
            owner: o,
            blocks: 0,
            addresses: 0,
            free: None,
            reachable: reachable.contains(&o.name) && !self.ended(&o),
            want: None,
            active: 0,
            reclaim_in: grace.and_then(|g| {
                if self.ended(&o) {
                    return Some(Duration::ZERO);
                }
                let since = self.unreachable.get(&o)?;
                Some((*since + g).saturating_since(now))
            }),
            ranges: Vec::new(),
        };
        if let Some(ring) = &self.ring {
            for (o, n) in ring.owners() {
                let s = owners.entry(o).or_insert_with(|| blank(o));
                s.blocks = n;
                s.addresses = n as u64 * u64::from(ring.id.block_len());
            }
            for (i, b) in ring.blocks.iter().enumerate() {
                let (first, last) = (ring.id.block_start(i), ring.id.block_start(i) + (ring.id.block_len() - 1));
                let ranges = &mut owners.get_mut(&b.owner).expect("counted above").ranges;
                match ranges.last_mut() {
                    Some((_, end)) if u32::from(*end) + 1 == first => *end = Ipv4Addr::from(last),
                    _ => ranges.push((Ipv4Addr::from(first), Ipv4Addr::from(last))),
                }
            }
            for (i, b) in self.agreed.iter().flat_map(|a| a.active.iter()) {
                if ring.blocks.get(usize::from(*i)) == Some(b) {
                    owners.entry(b.owner).or_insert_with(|| blank(b.owner)).active += 1;
                }
            }
        }
        for p in self.infos.values() {
            let s = owners.entry(p.owner).or_insert_with(|| blank(p.owner));
            s.free = Some(p.free);
            s.want = p.want;
        }
        // Infos of lives that own nothing are history, not owners.
        let owners = owners.into_values().filter(|o| o.blocks > 0 || o.owner == self.me || o.want.is_some()).collect();
        IpamStatus {
            range: self.cfg.range,
            default_subnet: self.cfg.default_subnet,
            me: self.me,
            creator: self.ring.as_ref().map(|r| r.id.creator),
            votes: self.paxos.votes.len(),
            quorum: self.quorum(),
            owners,
            slot: self.agreed.as_ref().map_or(0, |a| a.slot),
            voters: self.agreed.iter().flat_map(|a| a.voters.iter().copied()).collect(),
            quorum_lost: self.quorum_lost(),
            reclaim_after: grace,
            leases: self.leases.iter().map(|(a, l)| (*a, l.clone())).collect(),
            pending: self.pending.iter().map(|p| (p.target.clone(), p.subnet)).collect(),
            foreign: self.foreign.iter().cloned().collect(),
            stats: self.stats,
        }
    }
}
