//! A hash map for the per-source tables every router holds (MAC cache, duplicate
//! suppression): entries live in one dense vector and the hash table holds only their
//! 4-byte positions.
//!
//! A hash table is at most 7/8 full and doubles, so just past a power of two it is half
//! empty; with the entries in the table itself every empty slot costs a whole entry. Here an
//! empty slot costs five bytes, and the vector of entries holds no gaps. A simulator with
//! ten thousand routers that each learn a thousand MACs saves a third of those tables this
//! way, and a lookup costs one more (usually cached) read.

use core::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry as Slot;
use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// A map from `K` to `V` with dense storage (see the module docs). Iteration order is
/// insertion order, disturbed by removals; callers that expose an order sort.
#[derive(Debug, Clone)]
pub(crate) struct DenseMap<K, V> {
    index: HashTable<u32>,
    entries: Vec<(K, V)>,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap { index: HashTable::new(), entries: Vec::new() }
    }
}

#[inline]
fn hash<K: Hash>(k: &K) -> u64 {
    FxBuildHasher.hash_one(k)
}

impl<K: Hash + Eq, V> DenseMap<K, V> {
    #[inline]
    fn position(&self, k: &K) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(hash(k), |&i| entries[i as usize].0 == *k).map(|&i| i as usize)
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

    /// Sets `k` to `v`; returns the value it replaced.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        let entries = &mut self.entries;
        let h = hash(&k);
        match self.index.entry(h, |&i| entries[i as usize].0 == k, |&i| hash(&entries[i as usize].0)) {
            Slot::Occupied(o) => Some(core::mem::replace(&mut entries[*o.get() as usize].1, v)),
            Slot::Vacant(slot) => {
                let i = u32::try_from(entries.len()).expect("fewer than 2^32 entries");
                slot.insert(i);
                entries.push((k, v));
                None
            }
        }
    }

    /// The value of `k`, inserting `make()` first if there is none.
    pub(crate) fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let entries = &mut self.entries;
        let h = hash(&k);
        let i = match self.index.entry(h, |&i| entries[i as usize].0 == k, |&i| hash(&entries[i as usize].0)) {
            Slot::Occupied(o) => *o.get() as usize,
            Slot::Vacant(slot) => {
                let i = entries.len();
                slot.insert(u32::try_from(i).expect("fewer than 2^32 entries"));
                entries.push((k, make()));
                i
            }
        };
        &mut entries[i].1
    }

    /// Removes `k`; returns its value.
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let entries = &self.entries;
        let (i, _) = self.index.find_entry(hash(k), |&i| entries[i as usize].0 == *k).ok()?.remove();
        let last = self.entries.len() - 1;
        if i as usize != last {
            // The last entry moves into the gap: point its slot at the new place.
            let moved = hash(&self.entries[last].0);
            *self.index.find_mut(moved, |&j| j as usize == last).expect("every entry has a slot") = i;
        }
        Some(self.entries.swap_remove(i as usize).1)
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
        self.index.clear();
        let entries = &self.entries;
        for (i, (k, _)) in entries.iter().enumerate() {
            self.index.insert_unique(hash(k), i as u32, |&j| hash(&entries[j as usize].0));
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.index.clear();
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
    fn a_thousand_entries_take_less_room_than_in_a_plain_table() {
        // The plain table of 1,000 (8 + 24)-byte entries has 2,048 slots: 67 KB.
        let mut m = DenseMap::default();
        for k in 0u64..1000 {
            m.insert(k, [0u64; 3]);
        }
        let bytes = m.index.capacity() * 5 + m.entries.capacity() * 32;
        assert!(bytes < 45_000, "{bytes} bytes");
        m.clear();
        assert_eq!(m.len(), 0);
        assert_eq!(m.get(&5), None);
    }
}
