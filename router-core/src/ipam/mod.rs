//! Automatic IP address management: a ring of blocks agreed once, handed between peers.
//!
//! - At first start the peers agree, by Paxos over gossip ([`paxos`]), on one *creator*; the
//!   ring ([`ring`]) starts as all the creator's, and the creator at once hands its blocks
//!   out evenly among the peers that voted. No operator step is needed: the quorum is a
//!   majority of the peers named at launch.
//! - A peer allocates only from blocks it owns and (with automatic reclaim on) that a
//!   decision of the agreed log ([`agreed`]) put to use; the addresses it hands out (its
//!   *leases*) are its own business and are persisted with the ring.
//! - A peer that runs short publishes a *want*; the peer with the most wholly free blocks
//!   (or, after a while, any peer with some) hands it half of them. Only an owner writes a
//!   block, or an agreed reclaim (of a peer gone for good, never of a block in use), so no
//!   block ever has two owners that both believe it theirs.
//! - A peer that meets a different ring (another agreement, another range) reports it and
//!   never merges it.

pub mod agreed;
mod decide;
mod error;
mod gossip;
pub mod paxos;
mod report;
pub mod ring;
mod space;
#[cfg(test)]
mod testnet;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use core::time::Duration;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use agreed::{Agreed, Change, Decree, Log, SlotBallot, SlotVote};
pub use error::IpamError;
pub use paxos::{Ballot, Paxos, Step, Vote};
pub use report::{IpamStatus, OwnerStatus};
pub use ring::{Block, Owner, Ring, RingId};

use crate::peer::PeerName;
use crate::time::Instant;

/// Longest target name (a Docker container id is 64).
pub const TARGET_MAX: usize = 128;
/// Most peer infos (one per life of every peer ever seen with this ring) and votes kept.
pub const INFOS_MAX: usize = 16_384;
/// Most allocations waiting for space at once.
pub const PENDING_MAX: usize = 1024;

/// How the allocator is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConfig {
    /// The whole range the ring divides.
    pub range: Ipv4Net,
    /// Where an allocation without a subnet takes its address (inside `range`).
    pub default_subnet: Ipv4Net,
    /// How many peers start the network (the peers named at launch and this one): a
    /// majority of them must agree before the ring is created.
    pub init_peers: usize,
    /// How long an allocation waits for space before it fails.
    pub alloc_timeout: Duration,
    /// How long an agreement round waits before a new ballot.
    pub paxos_retry: Duration,
    /// How long a want waits for the richest peer before any peer with space answers it.
    pub donate_delay: Duration,
    /// Hold back our own hand-overs until the driver has saved the state that records them
    /// ([`crate::Router::ipam_saved`]): a router that crashes after giving blocks away then
    /// never restarts believing it still owns them. A driver that persists state sets it.
    pub write_ahead: bool,
    /// How long a peer stays unreachable before the voters reclaim the space it does not
    /// use ([`agreed`]); `None` turns automatic reclaim off (blocks are then used without
    /// agreement, and only `weave rmpeer` frees a gone peer's space).
    pub reclaim_after: Option<Duration>,
}

impl IpamConfig {
    /// The defaults around `range`: the default subnet is the whole range, one peer starts.
    pub fn new(range: Ipv4Net) -> IpamConfig {
        IpamConfig {
            range: range.trunc(),
            default_subnet: range.trunc(),
            init_peers: 1,
            alloc_timeout: Duration::from_secs(30),
            paxos_retry: Duration::from_secs(3),
            donate_delay: Duration::from_secs(2),
            write_ahead: false,
            reclaim_after: Some(Duration::from_secs(600)),
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), IpamError> {
        if self.range.prefix_len() > 30 {
            return Err(IpamError::RangeTooSmall(self.range));
        }
        if !self.range.contains(&self.default_subnet) || self.default_subnet.prefix_len() > 30 {
            return Err(IpamError::OutsideRange { subnet: self.default_subnet, range: self.range });
        }
        if self.init_peers == 0 {
            return Err(IpamError::NoInitPeers);
        }
        let block_prefix = 32 - RingId::new(Owner { name: PeerName::default(), life: 0 }, self.range).block_bits;
        if self.default_subnet.prefix_len() > block_prefix {
            return Err(IpamError::SubnetSmallerThanBlock { subnet: self.default_subnet, block_prefix });
        }
        Ok(())
    }
}

/// What one peer publishes about its space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer (and life).
    pub owner: Owner,
    /// Bumped by the peer at every change.
    pub version: u32,
    /// Free addresses in its blocks.
    pub free: u32,
    /// Its blocks with no address in use.
    pub free_blocks: u32,
    /// The subnet it needs space in, if any.
    pub want: Option<Ipv4Net>,
    /// This life has ended: a later life of the same peer says so. It wants nothing and
    /// gives nothing, and the voters reclaim what of its space is not in use.
    pub retired: bool,
    /// A block it owns and asks the voters to put to use, with its ring entry.
    pub activate: Option<(u16, Block)>,
}

/// One address handed out by this peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it: a container id, a namespace path, a name the user chose.
    pub target: String,
    /// The subnet it was given in (its prefix is the container's).
    pub subnet: Ipv4Net,
}

/// What a peer persists so that a restart neither loses nor re-issues addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamState {
    /// The allocator's range (a state for another range is refused).
    pub range: Ipv4Net,
    /// Our life.
    pub life: u32,
    /// Our Paxos vote (before the ring exists, a promise must survive a restart).
    pub vote: Option<Vote>,
    /// The ring as we know it.
    pub ring: Option<Ring>,
    /// Our info's version.
    pub info_version: u32,
    /// The addresses we handed out.
    pub leases: BTreeMap<Ipv4Addr, Lease>,
    /// The agreed state as we applied it.
    #[serde(default)]
    pub agreed: Option<Agreed>,
    /// Our vote in the agreed log's current slot (a promise must survive a restart).
    #[serde(default)]
    pub slot_vote: Option<SlotVote>,
}

/// The result of an allocation that waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    /// Who asked.
    pub target: String,
    /// In which subnet.
    pub subnet: Ipv4Net,
    /// The address (with the subnet's prefix), or why there is none.
    pub result: Result<Ipv4Net, IpamError>,
}

#[derive(Debug, Clone)]
struct Pending {
    target: String,
    subnet: Ipv4Net,
    deadline: Instant,
}

/// Another ring met through gossip.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ForeignRing {
    /// Its range.
    pub range: Ipv4Net,
    /// Its creator, when it has a ring (else the peer is still agreeing).
    pub creator: Option<Owner>,
}

/// The allocator of one peer.
#[derive(Debug)]
pub struct Ipam {
    cfg: IpamConfig,
    me: Owner,
    paxos: Paxos,
    ring: Option<Ring>,
    infos: BTreeMap<Owner, PeerInfo>,
    leases: BTreeMap<Ipv4Addr, Lease>,
    /// Addresses in use per owned block.
    used: BTreeMap<usize, u32>,
    pending: Vec<Pending>,
    /// Each wanting peer's wanted subnet and when we first saw it want it.
    wants: BTreeMap<Owner, (Ipv4Net, Instant)>,
    /// When we last gave blocks to each peer that still wants.
    gave: BTreeMap<Owner, Instant>,
    /// When our current ballot (or our wait for one) started.
    round_start: Option<Instant>,
    /// Before this we publish no want: the creator's share-out is on its way to a voter.
    quiet_until: Option<Instant>,
    foreign: BTreeSet<ForeignRing>,
    done: VecDeque<Allocated>,
    dirty_votes: BTreeSet<PeerName>,
    dirty_blocks: BTreeSet<u16>,
    dirty_infos: BTreeSet<Owner>,
    /// Our own block writes waiting to be saved (`write_ahead`): the generation that holds
    /// each, and the block as it was before.
    unsaved: BTreeMap<u16, (u64, Block)>,
    /// The persistent state changed since [`Ipam::take_changed`].
    changed: bool,
    /// Bumped by every [`Ipam::take_changed`] that reports a change.
    gen: u64,
    /// The agreed state, once the ring's creator wrote its first voters.
    agreed: Option<Agreed>,
    /// Votes of the agreed log's current slot and of later ones heard early.
    log: Log,
    /// When the current slot's proposal (or our wait for one) started.
    slot_start: Option<Instant>,
    /// Owners holding space or a vote, unreachable since.
    unreachable: BTreeMap<Owner, Instant>,
    dirty_agreed: bool,
    /// Others' slot votes merged since the last delta, to pass on (kept as merged: a decision
    /// may drop them from the log before the delta is taken).
    forward: BTreeMap<(u32, Owner), SlotVote>,
    /// Our vote in each slot as it last changed, to send (once saved, with `write_ahead`).
    my_out: BTreeMap<u32, SlotVote>,
    /// Our vote waits for the state of this generation to be saved (`write_ahead`).
    vote_unsaved: Option<u64>,
    /// The agreed state we created waits for the state of this generation to be saved.
    agreed_unsaved: Option<u64>,
    /// Counters.
    pub stats: IpamStats,
}

/// Allocator counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IpamStats {
    /// Addresses handed out.
    pub allocated: u64,
    /// Addresses freed.
    pub freed: u64,
    /// Blocks given to other peers.
    pub blocks_given: u64,
    /// Blocks received from other peers.
    pub blocks_received: u64,
    /// Blocks this peer took by an agreed reclaim (as the proposer whose decree won).
    pub blocks_reclaimed: u64,
    /// Gossip from another ring or range, ignored.
    pub foreign_updates: u64,
    /// Infos or votes dropped because their table was full.
    pub infos_dropped: u64,
    /// Leases in a block another peer came to own (a broken safety assumption: a restored
    /// old state, or two routers with one name and state).
    pub conflicts: u64,
}

impl IpamStats {
    /// Adds another allocator's counters to these (for totals over many routers).
    pub fn accumulate(&mut self, o: &IpamStats) {
        let IpamStats {
            allocated,
            freed,
            blocks_given,
            blocks_received,
            blocks_reclaimed,
            foreign_updates,
            infos_dropped,
            conflicts,
        } = o;
        self.allocated += allocated;
        self.freed += freed;
        self.blocks_given += blocks_given;
        self.blocks_received += blocks_received;
        self.blocks_reclaimed += blocks_reclaimed;
        self.foreign_updates += foreign_updates;
        self.infos_dropped += infos_dropped;
        self.conflicts += conflicts;
    }
}

impl Ipam {
    /// A fresh allocator for `me` (its life new), or one restored from `state`.
    pub fn new(cfg: IpamConfig, me: Owner, state: Option<IpamState>) -> Result<Ipam, IpamError> {
        cfg.validate()?;
        let mut ipam = Ipam {
            me,
            paxos: Paxos::default(),
            ring: None,
            infos: BTreeMap::new(),
            leases: BTreeMap::new(),
            used: BTreeMap::new(),
            pending: Vec::new(),
            wants: BTreeMap::new(),
            gave: BTreeMap::new(),
            round_start: None,
            quiet_until: None,
            foreign: BTreeSet::new(),
            done: VecDeque::new(),
            dirty_votes: BTreeSet::new(),
            dirty_blocks: BTreeSet::new(),
            dirty_infos: BTreeSet::new(),
            unsaved: BTreeMap::new(),
            agreed: None,
            log: Log::default(),
            slot_start: None,
            unreachable: BTreeMap::new(),
            dirty_agreed: false,
            forward: BTreeMap::new(),
            my_out: BTreeMap::new(),
            vote_unsaved: None,
            agreed_unsaved: None,
            changed: true,
            gen: 0,
            stats: IpamStats::default(),
            cfg,
        };
        let mut version = 1;
        if let Some(s) = state {
            if s.range != ipam.cfg.range {
                return Err(IpamError::StateMismatch { saved: s.range, range: ipam.cfg.range });
            }
            ipam.me.life = s.life;
            if let Some(v) = s.vote {
                ipam.paxos.votes.insert(me.name, Vote { name: me.name, ..v });
            }
            ipam.ring = s.ring.filter(|r| r.id.range == ipam.cfg.range && r.blocks.len() == r.id.blocks());
            ipam.leases = s.leases;
            version = s.info_version + 1;
            ipam.agreed = s.agreed.filter(|_| ipam.ring.is_some());
            if let Some(v) = s.slot_vote.filter(|v| v.voter == ipam.me) {
                ipam.log.votes.insert((v.slot, ipam.me), v);
            }
        }
        let info =
            PeerInfo { owner: ipam.me, version, free: 0, free_blocks: 0, want: None, retired: false, activate: None };
        ipam.infos.insert(ipam.me, info);
        ipam.dirty_infos.insert(ipam.me);
        ipam.recount();
        Ok(ipam)
    }

    /// Who we are.
    pub fn owner(&self) -> Owner {
        self.me
    }

    /// The configuration.
    pub fn config(&self) -> &IpamConfig {
        &self.cfg
    }

    /// The ring, once agreed.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    /// Our leases.
    pub fn leases(&self) -> &BTreeMap<Ipv4Addr, Lease> {
        &self.leases
    }

    /// Every peer's published info.
    pub fn infos(&self) -> &BTreeMap<Owner, PeerInfo> {
        &self.infos
    }

    /// Paxos votes (empty once the ring exists).
    pub fn votes(&self) -> &BTreeMap<PeerName, Vote> {
        &self.paxos.votes
    }

    /// Other rings or ranges met.
    pub fn foreign(&self) -> &BTreeSet<ForeignRing> {
        &self.foreign
    }

    /// Allocations waiting for space: target and subnet.
    pub fn pending(&self) -> impl Iterator<Item = (&str, Ipv4Net)> {
        self.pending.iter().map(|p| (p.target.as_str(), p.subnet))
    }

    /// The state to persist.
    pub fn state(&self) -> IpamState {
        IpamState {
            range: self.cfg.range,
            life: self.me.life,
            vote: self.paxos.votes.get(&self.me.name).copied(),
            ring: self.ring.clone(),
            info_version: self.infos[&self.me].version,
            leases: self.leases.clone(),
            agreed: self.agreed.clone(),
            slot_vote: self.agreed.as_ref().and_then(|a| self.log.my_vote(self.me, a)).cloned(),
        }
    }

    /// True once since the persistent state last changed (and a new generation of it begins).
    pub fn take_changed(&mut self) -> bool {
        let changed = core::mem::take(&mut self.changed);
        self.gen += u64::from(changed);
        changed
    }

    /// The generation of the current state (see [`Ipam::saved`]).
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// The driver saved the state of generation `gen`: our hand-overs it holds may go out.
    pub fn saved(&mut self, gen: u64) {
        let ready: Vec<u16> = self.unsaved.iter().filter(|(_, (g, _))| *g <= gen).map(|(i, _)| *i).collect();
        for i in ready {
            self.unsaved.remove(&i);
            self.dirty_blocks.insert(i);
        }
        if self.vote_unsaved.is_some_and(|g| g <= gen) {
            self.vote_unsaved = None;
        }
        if self.agreed_unsaved.is_some_and(|g| g <= gen) {
            self.agreed_unsaved = None;
            self.dirty_agreed = true;
        }
    }

    /// The agreed state, once the ring's first voters are known.
    pub fn agreed(&self) -> Option<&Agreed> {
        self.agreed.as_ref()
    }

    /// The agreed log's votes we hold.
    pub fn slot_votes(&self) -> impl Iterator<Item = &SlotVote> {
        self.log.votes.values()
    }

    /// Records our own write of block `i` (whose entry was `before`): sent at once, or with
    /// `write_ahead` once the state holding it is saved.
    fn wrote(&mut self, i: usize, before: Block) {
        let i = i as u16;
        if self.cfg.write_ahead {
            self.unsaved.entry(i).or_insert((self.gen + 1, before));
        } else {
            self.dirty_blocks.insert(i);
        }
    }

    /// The next finished allocation that had to wait.
    pub fn poll_allocated(&mut self) -> Option<Allocated> {
        self.done.pop_front()
    }

    /// Majority of the starting peers.
    fn quorum(&self) -> usize {
        self.cfg.init_peers / 2 + 1
    }

    /// Takes the agreed ring; Paxos is over. The creator, when it first learns that it is
    /// (from its own count of the votes, or from a peer that counted first), shares the ring
    /// out among the peers that voted.
    fn adopt(&mut self, now: Instant, ring: Ring) {
        tracing::info!(range = %ring.id.range, creator = %ring.id.creator, "address ring agreed");
        let fresh = ring.id.creator == self.me && ring.blocks.iter().all(|b| b.version == 1);
        if self.paxos.votes.contains_key(&self.me.name) && ring.id.creator != self.me {
            self.quiet_until = Some(now + self.cfg.donate_delay);
        }
        self.ring = Some(ring);
        if fresh {
            let voters: BTreeSet<PeerName> = self.paxos.votes.keys().copied().collect();
            self.hand_out(&voters);
        }
        self.paxos.votes.clear();
        self.dirty_votes.clear();
        // Our next update carries the ring: peers still counting votes learn the outcome.
        self.dirty_infos.insert(self.me);
        self.changed = true;
        self.recount();
    }

    /// Leases in blocks that are no longer ours are counted as conflicts.
    fn count_conflicts(&mut self) {
        let Some(ring) = &self.ring else { return };
        let n = self.leases.keys().filter(|a| ring.owner_of(**a).is_some_and(|o| o != self.me)).count();
        if n > 0 {
            tracing::error!(
                leases = n,
                "blocks holding our leases now belong to another peer (an old state restored?)"
            );
            self.stats.conflicts += n as u64;
        }
    }

    /// Recomputes per-block use and our info.
    fn recount(&mut self) {
        self.used.clear();
        if let Some(ring) = &self.ring {
            for a in self.leases.keys() {
                if let Some(i) = ring.id.block_of(*a) {
                    *self.used.entry(i).or_insert(0) += 1;
                }
            }
        }
        self.publish(None);
    }

    /// Brings our info up to date (with `want`, or keeping the current one when `None`).
    fn publish(&mut self, want: Option<Option<Ipv4Net>>) {
        let (mut free, mut free_blocks) = (0u32, 0u32);
        if let Some(ring) = &self.ring {
            for (i, b) in ring.blocks.iter().enumerate() {
                if b.owner == self.me {
                    let used = self.used.get(&i).copied().unwrap_or(0);
                    free += ring.id.block_len() - used;
                    free_blocks += u32::from(used == 0);
                }
            }
        }
        let me = self.me;
        let activate = self.activation_request();
        let info = self.infos.get_mut(&me).expect("our own info");
        let want = want.unwrap_or(info.want);
        if (info.free, info.free_blocks, info.want, info.activate) != (free, free_blocks, want, activate) {
            *info =
                PeerInfo { owner: me, version: info.version + 1, free, free_blocks, want, retired: false, activate };
            self.dirty_infos.insert(me);
            self.changed = true;
        }
    }

    /// Runs the allocator's steps at `now`, `reachable` being the peers we can reach (us
    /// included). Returns when to run again, if anything waits.
    pub fn think(&mut self, now: Instant, reachable: &BTreeSet<PeerName>) -> Option<Instant> {
        if self.ring.is_none() {
            let cfg_peers = self.cfg.init_peers;
            let (gone, keep): (Vec<Pending>, _) =
                core::mem::take(&mut self.pending).into_iter().partition(|p| now >= p.deadline);
            self.pending = keep;
            for p in gone {
                self.done.push_back(Allocated {
                    target: p.target,
                    subnet: p.subnet,
                    result: Err(IpamError::NotReady(cfg_peers)),
                });
            }
            let next = self.agree(now, reachable);
            return next.into_iter().chain(self.pending.iter().map(|p| p.deadline)).min();
        }
        self.publish(None);
        let next_decision = self.decide(now, reachable);
        self.serve_pending(now);
        let next_donation = self.donate(now, reachable);
        self.publish(None);
        let next_pending = self.pending.iter().map(|p| p.deadline).min();
        let quiet = self.quiet_until.filter(|&t| t > now && !self.pending.is_empty());
        next_pending.into_iter().chain(next_donation).chain(quiet).chain(next_decision).min()
    }

    /// A Paxos step; creates the ring when agreed.
    fn agree(&mut self, now: Instant, reachable: &BTreeSet<PeerName>) -> Option<Instant> {
        let quorum = self.quorum();
        let mine = self.paxos.votes.get(&self.me.name).copied();
        let start = *self.round_start.get_or_insert(now);
        let voters: BTreeSet<PeerName> = self
            .paxos
            .votes
            .keys()
            .copied()
            .chain([self.me.name])
            .filter(|n| reachable.contains(n) || *n == self.me.name)
            .collect();
        let first = voters.first() == Some(&self.me.name) && voters.len() >= quorum;
        // A round that stalls is retried by the lowest name first: the k-th waits k+1 retries.
        let rank = voters.iter().position(|n| *n == self.me.name).unwrap_or(0) as u32;
        let patience = self.cfg.paxos_retry * (rank + 1);
        let stalled = now >= start + patience;
        if (mine.is_none_or(|v| v.promised.round == 0) && first) || stalled {
            self.paxos.propose(self.me.name);
            self.round_start = Some(now);
            self.dirty_votes.insert(self.me.name);
            self.changed = true;
        }
        match self.paxos.think(self.me, quorum) {
            Step::Decided(_, creator) => {
                self.adopt(now, Ring::new(RingId::new(creator, self.cfg.range)));
                self.serve_pending(now);
                self.publish(None);
                return self.pending.iter().map(|p| p.deadline).min();
            }
            Step::Voted => {
                self.dirty_votes.insert(self.me.name);
                self.changed = true;
            }
            Step::Idle => {}
        }
        Some(self.round_start.unwrap_or(now) + patience)
    }

    /// As the ring's creator: hands the blocks out evenly among `voters` (their current lives).
    fn hand_out(&mut self, voters: &BTreeSet<PeerName>) {
        let owners: Vec<Owner> = voters
            .iter()
            .filter_map(|n| {
                if *n == self.me.name {
                    Some(self.me)
                } else {
                    self.infos.keys().rev().find(|o| o.name == *n).copied()
                }
            })
            .collect();
        let n = self.ring.as_ref().expect("just created").blocks.len();
        for i in 0..n {
            let to = owners[i * owners.len() / n];
            let ring = self.ring.as_mut().expect("just created");
            let before = ring.blocks[i];
            if to != self.me && ring.give(i, self.me, to) {
                self.wrote(i, before);
                self.stats.blocks_given += 1;
            }
        }
        self.changed = true;
        if self.gated() {
            let voters = owners.iter().copied().take(agreed::VOTERS_MAX).collect();
            self.agreed = Some(Agreed { voters, ..Agreed::default() });
            self.dirty_agreed = true;
            if self.cfg.write_ahead {
                self.agreed_unsaved = Some(self.gen + 1);
            }
        }
        tracing::info!(peers = owners.len(), blocks = n, "created the address ring and shared it out");
    }
}
