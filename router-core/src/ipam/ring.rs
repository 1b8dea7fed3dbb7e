//! The ring: the allocation range cut into equal blocks, each with one owner.
//!
//! Every block carries `(version, owner)`. Only the block's owner writes the next version
//! (to give the block away), so the versions of one block form a chain with one writer per
//! step; merging keeps, per block, the greater `(version, owner)`. That merge is a join:
//! commutative, associative and idempotent, and the blocks always cover the range exactly
//! once because a block is an index, never an interval that could overlap another.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::peer::PeerName;

/// Largest number of blocks a ring is cut into.
pub const BLOCKS_MAX: usize = 1024;
/// Fewest addresses in a block (unless the whole range is smaller).
pub const BLOCK_MIN_BITS: u8 = 4;

/// Who owns space: a peer name and the life of its allocator state.
///
/// A router that starts without its state directory draws a new `life`: the space its
/// earlier life held is not its own (that life may have handed blocks on in messages still
/// in flight), so it is never used twice by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Owner {
    /// The peer.
    pub name: PeerName,
    /// Its allocator state's life.
    pub life: u32,
}

impl core::fmt::Display for Owner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}#{:08x}", self.name, self.life)
    }
}

/// One block's state. Entries order by epoch, then version, then owner: merging keeps the
/// greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Block {
    /// The agreed decision that last reclaimed the block (0: never reclaimed); see
    /// [`super::agreed`]. A reclaim outranks every hand-over made before it.
    #[serde(default)]
    pub epoch: u32,
    /// Bumped by the owner at every hand-over.
    pub version: u32,
    /// The current owner.
    pub owner: Owner,
}

/// The ring's identity and shape; two rings merge only when these are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RingId {
    /// The peer the agreement chose to create the ring; every block starts as its own.
    pub creator: Owner,
    /// The whole range.
    pub range: Ipv4Net,
    /// Each block holds `1 << block_bits` addresses.
    pub block_bits: u8,
}

impl RingId {
    /// The shape of a ring over `range`: at most [`BLOCKS_MAX`] blocks of at least
    /// `1 << BLOCK_MIN_BITS` addresses (one block when the range is smaller).
    pub fn new(creator: Owner, range: Ipv4Net) -> RingId {
        let host = 32 - range.prefix_len();
        let max_bits = BLOCKS_MAX.trailing_zeros() as u8;
        let block_bits = host.min(BLOCK_MIN_BITS).max(host.saturating_sub(max_bits));
        RingId { creator, range: range.trunc(), block_bits }
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        1 << (32 - self.range.prefix_len() - self.block_bits)
    }

    /// Addresses per block.
    pub fn block_len(&self) -> u32 {
        1 << self.block_bits
    }

    /// The first address of block `i`.
    pub fn block_start(&self, i: usize) -> u32 {
        u32::from(self.range.network()) + ((i as u32) << self.block_bits)
    }

    /// The block holding `addr`, if it is in the range.
    pub fn block_of(&self, addr: Ipv4Addr) -> Option<usize> {
        self.range
            .contains(&addr)
            .then(|| ((u32::from(addr) - u32::from(self.range.network())) >> self.block_bits) as usize)
    }

    /// The blocks that share at least one address with `subnet`.
    pub fn blocks_in(&self, subnet: Ipv4Net) -> core::ops::Range<usize> {
        let lo = u32::from(subnet.network()).max(u32::from(self.range.network()));
        let hi = u32::from(subnet.broadcast()).min(u32::from(self.range.broadcast()));
        if lo > hi {
            return 0..0;
        }
        let base = u32::from(self.range.network());
        ((lo - base) >> self.block_bits) as usize..((hi - base) >> self.block_bits) as usize + 1
    }
}

/// The ring's blocks, as this peer knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// Identity and shape.
    pub id: RingId,
    /// One entry per block, in address order.
    pub blocks: Vec<Block>,
}

impl Ring {
    /// The ring as created: every block its creator's, at version 1.
    pub fn new(id: RingId) -> Ring {
        Ring { id, blocks: vec![Block { epoch: 0, version: 1, owner: id.creator }; id.blocks()] }
    }

    /// Merges one block as another peer knows it; true when ours changed. An index out of
    /// range is ignored (the caller checked the ring's shape).
    pub fn merge_block(&mut self, i: usize, theirs: Block) -> bool {
        match self.blocks.get_mut(i) {
            Some(b) if theirs > *b => {
                *b = theirs;
                true
            }
            _ => false,
        }
    }

    /// Hands block `i` from `from` to `to`; false (and nothing changes) unless `from` owns it.
    pub fn give(&mut self, i: usize, from: Owner, to: Owner) -> bool {
        match self.blocks.get_mut(i) {
            Some(b) if b.owner == from => {
                *b = Block { version: b.version + 1, owner: to, ..*b };
                true
            }
            _ => false,
        }
    }

    /// Blocks per owner, in owner order.
    pub fn owners(&self) -> std::collections::BTreeMap<Owner, usize> {
        let mut m = std::collections::BTreeMap::new();
        for b in &self.blocks {
            *m.entry(b.owner).or_insert(0) += 1;
        }
        m
    }

    /// The owner of `addr`, if it is in the range.
    pub fn owner_of(&self, addr: Ipv4Addr) -> Option<Owner> {
        self.id.block_of(addr).map(|i| self.blocks[i].owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owner(n: u8) -> Owner {
        Owner { name: PeerName([2, 0, 0, 0, 0, n]), life: u32::from(n) * 7 }
    }

    #[test]
    fn shapes_cut_ranges_into_bounded_blocks() {
        let id = RingId::new(owner(1), "10.32.0.0/12".parse().unwrap());
        assert_eq!((id.blocks(), id.block_len()), (1024, 1024));
        let small = RingId::new(owner(1), "10.0.0.0/24".parse().unwrap());
        assert_eq!((small.blocks(), small.block_len()), (16, 16));
        let tiny = RingId::new(owner(1), "10.0.0.0/30".parse().unwrap());
        assert_eq!((tiny.blocks(), tiny.block_len()), (1, 4));
        assert_eq!(small.block_of("10.0.0.17".parse().unwrap()), Some(1));
        assert_eq!(small.block_of("10.0.1.0".parse().unwrap()), None);
        assert_eq!(id.blocks_in("10.32.4.0/24".parse().unwrap()), 1..2);
        assert_eq!(id.blocks_in("10.32.0.0/16".parse().unwrap()), 0..64);
        assert_eq!(id.blocks_in("10.0.0.0/8".parse().unwrap()), 0..1024);
        assert_eq!(id.blocks_in("192.168.0.0/16".parse().unwrap()), 0..0);
    }

    #[test]
    fn only_the_owner_gives_a_block_away() {
        let mut r = Ring::new(RingId::new(owner(1), "10.0.0.0/24".parse().unwrap()));
        assert!(!r.give(3, owner(2), owner(2)));
        assert!(r.give(3, owner(1), owner(2)));
        assert_eq!(r.blocks[3], Block { epoch: 0, version: 2, owner: owner(2) });
        assert_eq!(r.owner_of("10.0.0.49".parse().unwrap()), Some(owner(2)));
        assert_eq!(r.owners().into_iter().collect::<Vec<_>>(), vec![(owner(1), 15), (owner(2), 1)]);
    }

    /// Replays random hand-overs on copies of one ring, each copy seeing a random subset.
    fn replicas(ops: &[(u8, u8, u8, u8)]) -> Vec<Ring> {
        let id = RingId::new(owner(0), "10.0.0.0/26".parse().unwrap());
        let mut rs = vec![Ring::new(id); 3];
        for &(who, block, to, seen_by) in ops {
            let r = &mut rs[usize::from(who % 3)];
            let i = usize::from(block) % id.blocks();
            let cur = r.blocks[i];
            if to >= 250 {
                // An agreed reclaim: every peer applying it writes the same entry.
                r.merge_block(i, Block { epoch: u32::from(to), version: 1, owner: owner(to % 4) });
            } else {
                r.give(i, cur.owner, owner(to % 4));
            }
            let snapshot = r.clone();
            for (k, other) in rs.iter_mut().enumerate() {
                if seen_by & (1 << k) != 0 {
                    merge(other, &snapshot);
                }
            }
        }
        rs
    }

    fn merge(a: &mut Ring, b: &Ring) {
        for (i, &blk) in b.blocks.iter().enumerate() {
            a.merge_block(i, blk);
        }
    }

    fn merged(a: &Ring, b: &Ring) -> Ring {
        let mut m = a.clone();
        merge(&mut m, b);
        m
    }

    proptest! {
        #[test]
        fn merge_is_a_join(ops in proptest::collection::vec(any::<(u8, u8, u8, u8)>(), 0..40)) {
            let rs = replicas(&ops);
            let (a, b, c) = (&rs[0], &rs[1], &rs[2]);
            prop_assert_eq!(merged(a, b), merged(b, a), "commutative");
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)), "associative");
            prop_assert_eq!(merged(a, a), a.clone(), "idempotent");
            // Exactly one owner per block, and together the blocks cover the range once.
            let m = merged(&merged(a, b), c);
            let total: usize = m.owners().values().sum();
            prop_assert_eq!(total, m.id.blocks());
            let mut covered = 0u64;
            for i in 0..m.id.blocks() {
                covered += u64::from(m.id.block_len());
                prop_assert_eq!(m.id.block_of(Ipv4Addr::from(m.id.block_start(i))), Some(i));
            }
            prop_assert_eq!(covered, 1u64 << (32 - m.id.range.prefix_len()));
        }
    }
}
