//! Why the allocator refuses or fails, in words that say what to do.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{Owner, TARGET_MAX};
use crate::peer::PeerName;

/// Why the allocator refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The router runs without an allocator.
    #[error("this router has no address allocator: launch it with --ipalloc-range")]
    Disabled,
    /// The range is too small to allocate from.
    #[error("allocation range {0} is too small: give a prefix of /30 or shorter")]
    RangeTooSmall(Ipv4Net),
    /// Zero peers at start.
    #[error("the number of peers that start the network must be at least 1")]
    NoInitPeers,
    /// A subnet or address outside the range.
    #[error("{subnet} is not inside the allocation range {range}")]
    OutsideRange {
        /// What was asked for.
        subnet: Ipv4Net,
        /// The range.
        range: Ipv4Net,
    },
    /// A subnet with no usable host address.
    #[error("subnet {0} has no host addresses: give a prefix of /30 or shorter")]
    SubnetTooSmall(Ipv4Net),
    /// No free address could be found in time.
    #[error("no free address in {0} in time: every reachable peer's space there is in use, or held in a block its owner uses (peers share space by whole blocks): free some, or ask in a wider subnet")]
    Exhausted(Ipv4Net),
    /// A default subnet smaller than the ring's blocks: only one peer could use it.
    #[error("default subnet {subnet} is smaller than the allocator's blocks (/{block_prefix}); peers share space by whole blocks: give a default subnet of /{block_prefix} or wider")]
    SubnetSmallerThanBlock {
        /// The subnet.
        subnet: Ipv4Net,
        /// The blocks' prefix length.
        block_prefix: u8,
    },
    /// The address is in a block another peer owns.
    #[error("{addr} belongs to peer {owner}'s space: claim it on that host, or pick an address this peer owns")]
    OwnedElsewhere {
        /// The address.
        addr: Ipv4Addr,
        /// Its block's owner.
        owner: Owner,
    },
    /// The address is already leased to someone else.
    #[error("{addr} is already in use by {target}")]
    InUse {
        /// The address.
        addr: Ipv4Addr,
        /// Who holds it.
        target: String,
    },
    /// The peers have not agreed on a ring yet.
    #[error("the allocator is still waiting for a majority of the {0} peers named at launch to agree; retry when `weave status ipam` shows a ring")]
    NotReady(usize),
    /// An empty or overlong target name.
    #[error("a target name must be 1 to {TARGET_MAX} bytes")]
    BadTarget,
    /// Too many allocations are waiting.
    #[error("too many allocations are waiting for space; retry later")]
    Busy,
    /// `rmpeer` of ourselves.
    #[error("a peer cannot remove itself: run `weave rmpeer` on another peer")]
    TakeOverSelf,
    /// `rmpeer` of a peer that is still reachable.
    #[error("peer {0} is reachable: stop it (`weave reset` there) before taking its space")]
    TakeOverLive(PeerName),
    /// A persisted state that does not fit this configuration.
    #[error("the saved allocator state is for range {saved}, not {range}: remove it with `weave reset` or launch with --ipalloc-range {saved}")]
    StateMismatch {
        /// The saved range.
        saved: Ipv4Net,
        /// The configured range.
        range: Ipv4Net,
    },
}
