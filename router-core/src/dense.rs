//! A hash map for the per-source tables every router holds (MAC cache, duplicate
//! suppression): entries live in one dense vector and the hash table holds only their
//! 4-byte positions.
//!
//! A hash table is at most 3/4 full and doubles, so just past a power of two it is more
//! than half empty; with the entries in the table itself every empty slot costs a whole
//! entry. Here an empty slot costs four bytes, and the vector of entries holds no gaps. A
//! simulator with ten thousand routers that each learn a thousand MACs saves a third of
//! those tables this way.
//!
//! A lookup reads one slot line and one entry. The table is linear probing over `u32`
//! slots, sixteen to a cache line, each holding a tag from the key's hash beside the
//! position, so that a probe rarely reads an entry that is not the key's. (A table with a
//! separate control array, as `hashbrown`'s, reads a third line per lookup; these tables
//! are looked up for every frame from thousands of sources and are rarely in cache.)

use core::hash::{BuildHasher, Hash};

use rustc_hash::FxBuildHasher;

/// Low bits of a slot: the entry's position plus one (0: the slot is empty).
const POS_BITS: u32 = 24;
const POS_MASK: u32 = (1 << POS_BITS) - 1;
/// Fewer entries than this (the tables that use this map are bounded far below).
const ENTRIES_MAX: usize = POS_MASK as usize;

/// A map from `K` to `V` with dense storage (see the module docs). Iteration order is
/// insertion order, disturbed by removals; callers that expose an order sort.
#[derive(Debug, Clone)]
pub(crate) struct DenseMap<K, V> {
    /// A power of two of slots (or none), at most 3/4 full: 0 is empty, otherwise an 8-bit
    /// tag from the hash above [`POS_BITS`] of position plus one.
    slots: Vec<u32>,
    entries: Vec<(K, V)>,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap { slots: Vec::new(), entries: Vec::new() }
    }
}

/// The key's hash, mixed so that its top bits (the home slot) and the tag are uniform.
#[inline]
fn hash<K: Hash>(k: &K) -> u64 {
    FxBuildHasher.hash_one(k).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Bits 32..40 of the hash, in a slot's top byte: apart from the home slot's bits (the top
/// ones) for any table of fewer than 2^24 slots, so keys that probe past each other
/// rarely share a tag.
#[inline]
fn tag(h: u64) -> u32 {
    ((h >> 8) as u32) & !POS_MASK
}

/// Where a key is: its slot and its entry's position, or the empty slot where it would go
/// with the slot value's tag.
enum Found {
    At { slot: usize, pos: usize },
    Vacant { slot: usize, tag: u32 },
}

impl<K: Hash + Eq, V> DenseMap<K, V> {
    #[inline]
    fn home(&self, h: u64) -> usize {
        // Top bits: `slots.len()` is a power of two of at least 8.
        (h >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    #[inline]
    fn find(&self, k: &K) -> Found {
        let h = hash(k);
        let (t, mask) = (tag(h), self.slots.len() - 1);
        let mut i = self.home(h);
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Found::Vacant { slot: i, tag: t };
            }
            if s & !POS_MASK == t {
                let pos = (s & POS_MASK) as usize - 1;
                if self.entries[pos].0 == *k {
                    return Found::At { slot: i, pos };
                }
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn position(&self, k: &K) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        match self.find(k) {
            Found::At { pos, .. } => Some(pos),
            Found::Vacant { .. } => None,
        }
    }

    /// The value of `k`.
    #[inline]
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.position(k).map(|i| &self.entries[i].1)
    }

    /// The value of `k`, to change.
    #[inline]
    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.position(k).map(|i| &mut self.entries[i].1)
    }

    /// The slot for `k` (present or where it would go), with room for one more entry.
    fn find_for_insert(&mut self, k: &K) -> Found {
        if (self.entries.len() + 1) * 4 > self.slots.len() * 3 {
            let n = (self.slots.len() * 2).max(8);
            self.slots = vec![0; n];
            self.reindex();
        }
        self.find(k)
    }

    fn occupy(&mut self, slot: usize, tag: u32, k: K, v: V) -> usize {
        let pos = self.entries.len();
        assert!(pos < ENTRIES_MAX, "a dense map holds fewer than 2^24 entries");
        self.slots[slot] = tag | (pos as u32 + 1);
        self.entries.push((k, v));
        pos
    }

    /// Sets `k` to `v`; returns the value it replaced.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find_for_insert(&k) {
            Found::At { pos, .. } => Some(core::mem::replace(&mut self.entries[pos].1, v)),
            Found::Vacant { slot, tag } => {
                self.occupy(slot, tag, k, v);
                None
            }
        }
    }

    /// The value of `k`, inserting `make()` first if there is none.
    pub(crate) fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let pos = match self.find_for_insert(&k) {
            Found::At { pos, .. } => pos,
            Found::Vacant { slot, tag } => self.occupy(slot, tag, k, make()),
        };
        &mut self.entries[pos].1
    }

    /// Removes `k`; returns its value.
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        if self.entries.is_empty() {
            return None;
        }
        let Found::At { slot, pos } = self.find(k) else { return None };
        self.vacate(slot);
        let last = self.entries.len() - 1;
        if pos != last {
            // The last entry moves into the gap: point its slot at the new place.
            let Found::At { slot, .. } = self.find(&self.entries[last].0) else {
                unreachable!("every entry has a slot")
            };
            self.slots[slot] = (self.slots[slot] & !POS_MASK) | (pos as u32 + 1);
        }
        Some(self.entries.swap_remove(pos).1)
    }

    /// Empties `slot`, moving later slots of the probe run back so that every key stays
    /// reachable from its home without tombstones.
    fn vacate(&mut self, slot: usize) {
        let mask = self.slots.len() - 1;
        let mut hole = slot;
        let mut j = (slot + 1) & mask;
        loop {
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(hash(&self.entries[(s & POS_MASK) as usize - 1].0));
            // It may fill the hole if the hole lies on its probe path, between home and j.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = 0;
    }

    /// Keeps the entries for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(|(k, v)| keep(k, v));
        if self.entries.len() != before {
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        self.slots.fill(0);
        if self.slots.is_empty() {
            return;
        }
        let mask = self.slots.len() - 1;
        for (pos, (k, _)) in self.entries.iter().enumerate() {
            let h = hash(k);
            let mut i = self.home(h);
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = tag(h) | (pos as u32 + 1);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.slots.fill(0);
        self.entries.clear();
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Retain(u16),
        Upsert(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range so removals and replacements hit.
        prop_oneof![
            4 => (0u16..200, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u16..200).prop_map(Op::Remove),
            1 => (1u16..7).prop_map(Op::Retain),
            2 => (0u16..200).prop_map(Op::Upsert),
        ]
    }

    proptest! {
        /// The map behaves as an ordinary map under any sequence of changes.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 1..600)) {
            let mut m = DenseMap::default();
            let mut model = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => prop_assert_eq!(m.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(m.remove(&k), model.remove(&k)),
                    Op::Retain(d) => {
                        m.retain(|k, _| k % d != 0);
                        model.retain(|k, _| k % d != 0);
                    }
                    Op::Upsert(k) => {
                        *m.get_or_insert_with(k, || 7) += 1;
                        *model.entry(k).or_insert(7) += 1;
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            for k in 0u16..200 {
                prop_assert_eq!(m.get(&k), model.get(&k));
            }
            let mut all: Vec<_> = m.iter().copied().collect();
            all.sort();
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_large_table_finds_every_key_after_removals() {
        // Past 2^16 slots the home slot takes the hash's top 17 bits and more.
        let mut m = DenseMap::default();
        for k in 0u64..100_000 {
            assert_eq!(m.insert(k * 7919, k), None);
        }
        for k in (0u64..100_000).step_by(3) {
            assert_eq!(m.remove(&(k * 7919)), Some(k));
        }
        for k in 0u64..100_000 {
            assert_eq!(m.get(&(k * 7919)), (k % 3 != 0).then_some(&k), "key {k}");
        }
        assert_eq!(m.len(), 66_666);
    }

    #[test]
    fn a_thousand_entries_take_less_room_than_in_a_plain_table() {
        // The plain table of 1,000 (8 + 24)-byte entries has 2,048 slots: 67 KB.
        let mut m = DenseMap::default();
        for k in 0u64..1000 {
            m.insert(k, [0u64; 3]);
        }
        let bytes = m.slots.capacity() * 4 + m.entries.capacity() * 32;
        assert!(bytes < 45_000, "{bytes} bytes");
        m.clear();
        assert_eq!(m.len(), 0);
        assert_eq!(m.get(&5), None);
    }
}
