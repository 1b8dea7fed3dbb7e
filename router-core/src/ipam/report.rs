//! The allocator as `weave status ipam`, `/metrics` and `weave report` show it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{ForeignRing, Ipam, IpamStats, Lease, Owner};
use crate::peer::PeerName;

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
}

impl Ipam {
    /// A snapshot for status, `reachable` being the peers we reach (us included).
    pub fn status(&self, reachable: &BTreeSet<PeerName>) -> IpamStatus {
        let mut owners: BTreeMap<Owner, OwnerStatus> = BTreeMap::new();
        let blank = |o: Owner| OwnerStatus {
            owner: o,
            blocks: 0,
            addresses: 0,
            free: None,
            reachable: reachable.contains(&o.name) && !self.infos.get(&o).is_some_and(|p| p.retired),
            want: None,
        };
        if let Some(ring) = &self.ring {
            for (o, n) in ring.owners() {
                let s = owners.entry(o).or_insert_with(|| blank(o));
                s.blocks = n;
                s.addresses = n as u64 * u64::from(ring.id.block_len());
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
            leases: self.leases.iter().map(|(a, l)| (*a, l.clone())).collect(),
            pending: self.pending.iter().map(|p| (p.target.clone(), p.subnet)).collect(),
            foreign: self.foreign.iter().cloned().collect(),
            stats: self.stats,
        }
    }
}
