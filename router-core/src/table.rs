//! A hash map for the per-source tables every router holds (MAC cache, duplicate
//! suppression), also used by the simulator for its hosts' bridge tables and neighbour
//! caches: linear probing with the entries in the slots, kept in the order of their hashes.
//!
//! A key's home slot is its hash scaled to the table, so the entries lie in hash order
//! with gaps between them, each at or a little after its home. A lookup reads the cache
//! line at the key's home, and the next one when the run there crosses it, and stops at
//! the first later hash. These tables are looked up for every frame from thousands of
//! sources and are rarely in cache; with a separate index (positions in slots, entries in
//! a vector) every lookup would be two dependent misses.
//!
//! Inserting shifts the run from the key's place to the next gap one slot on; removing
//! shifts the run after it back (no tombstones). The table is at most 7/8 full and grows
//! by a quarter, with a little room past the last home for the runs that overflow it, so
//! an entry takes about 1.2 to 1.5 times its size, where a power-of-two table at most 3/4
//! full takes 1.33 to 2.67 times. `Option<(K, V)>` slots cost nothing over `(K, V)` where the key or
//! value has a niche (an enum, a `NonZero`); callers lay out their entries for that.

use core::hash::Hash;

/// A map from `K` to `V` (see the module docs). Iteration is in the order of the keys'
/// hashes: stable for the same keys, whatever order they came in.
#[derive(Clone)]
pub struct Table<K, V> {
    /// In the order of the keys' hashes, each entry at or after its home slot with no empty
    /// slot between the two. Slots past `homes` hold the overflow of the last homes.
    slots: Vec<Option<(K, V)>>,
    /// Home slots: a key's home is its hash scaled to `0..homes`.
    homes: usize,
    len: usize,
    /// The keyed hash (aHash): keys chosen by someone who does not know the key cannot be
    /// made to fall on one run of slots.
    hasher: ahash::RandomState,
}

impl<K, V> core::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table").field("len", &self.len).field("homes", &self.homes).finish_non_exhaustive()
    }
}

/// The key of [`Table::default`]: fixed, for tables whose keys nobody outside chooses.
pub(crate) const FIXED_KEY: [u64; 4] =
    [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89];

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table::with_key(FIXED_KEY)
    }
}

impl<K, V> Table<K, V> {
    /// An empty table hashing with `key`. Tables keyed by what others choose (MACs that
    /// containers send, names and addresses that peers use) take a random key.
    pub fn with_key(key: [u64; 4]) -> Self {
        Table {
            slots: Vec::new(),
            homes: 0,
            len: 0,
            hasher: ahash::RandomState::with_seeds(key[0], key[1], key[2], key[3]),
        }
    }
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// The key's hash, whose top bits pick its home.
    #[inline]
    fn hash(&self, k: &K) -> u64 {
        self.hasher.hash_one(k)
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        ((u128::from(h) * self.homes as u128) >> 64) as usize
    }

    /// Where `k` is, or the slot it would take: the first from its home that is empty or
    /// holds a later hash.
    #[inline]
    fn find(&self, k: &K) -> Result<usize, usize> {
        let h = self.hash(k);
        let mut i = self.home(h);
        while let Some(Some((e, _))) = self.slots.get(i) {
            let eh = self.hash(e);
            if eh > h {
                break;
            }
            if eh == h && e == k {
                return Ok(i);
            }
            i += 1;
        }
        Err(i)
    }

    /// The value of `k`.
    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        let i = self.find(k).ok()?;
        self.slots[i].as_ref().map(|(_, v)| v)
    }

    /// The value of `k`, to change.
    #[inline]
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.find(k).ok()?;
        self.slots[i].as_mut().map(|(_, v)| v)
    }

    /// Sets `k` to `v`; returns the value it replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => self.slots[i].as_mut().map(|(_, old)| core::mem::replace(old, v)),
            Err(i) => {
                self.put(i, k, v);
                None
            }
        }
    }

    /// The value of `k`, inserting `make()` first if there is none.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => self.put(i, k, make()),
        };
        match &mut self.slots[i] {
            Some((_, v)) => v,
            None => unreachable!("slot {i} was just found or filled"),
        }
    }

    /// Puts a new key in slot `i` (where [`Table::find`] said it goes); returns where it went.
    fn put(&mut self, mut i: usize, k: K, v: V) -> usize {
        if (self.len + 1) * 8 > self.homes * 7 {
            self.grow();
            i = self.find(&k).expect_err("the key is new");
        }
        loop {
            // The run from `i` moves one slot on, into the next gap.
            let gap = self.slots[i..].iter().position(Option::is_none).map_or(self.slots.len(), |g| i + g);
            if gap == self.slots.len() {
                if self.slots.len() == self.slots.capacity() {
                    // The run overflows past the room kept for it: spread the entries out.
                    self.grow();
                    i = self.find(&k).expect_err("the key is new");
                    continue;
                }
                self.slots.push(None);
            }
            self.slots[i..=gap].rotate_right(1);
            self.slots[i] = Some((k, v));
            self.len += 1;
            return i;
        }
    }

    /// Removes `k`; returns its value.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let mut i = self.find(k).ok()?;
        // The entries after it that lie past their home move back one.
        while let Some(Some((next, _))) = self.slots.get(i + 1) {
            if self.home(self.hash(next)) > i {
                break;
            }
            self.slots.swap(i, i + 1);
            i += 1;
        }
        self.len -= 1;
        self.slots[i].take().map(|(_, v)| v)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let before = self.len;
        for s in &mut self.slots {
            if let Some((k, v)) = s {
                if !keep(k, v) {
                    *s = None;
                    self.len -= 1;
                }
            }
        }
        if self.len != before {
            self.close_gaps();
        }
    }

    /// Moves every entry back to its home or next to the entry before it, whichever is
    /// later: the layout's rule again after removals left gaps in runs.
    fn close_gaps(&mut self) {
        let mut next = 0;
        for i in 0..self.slots.len() {
            let Some((k, _)) = &self.slots[i] else { continue };
            // Slots from `next` up to `i` are empty: their entries moved back or went.
            let to = self.home(self.hash(k)).max(next);
            self.slots.swap(to, i);
            next = to + 1;
        }
    }

    /// A quarter more homes, with room past them for overflow.
    fn grow(&mut self) {
        let homes = (self.homes + self.homes / 4).max(8);
        let old = core::mem::replace(&mut self.slots, Vec::with_capacity(homes + homes / 32 + 2));
        self.homes = homes;
        self.slots.resize_with(homes, || None);
        let mut next = 0;
        // In hash order, so each goes to its home or just after the one before.
        for (k, v) in old.into_iter().flatten() {
            let i = self.home(self.hash(&k)).max(next);
            if i == self.slots.len() {
                self.slots.push(None);
            }
            self.slots[i] = Some((k, v));
            next = i + 1;
        }
    }

    /// Forgets everything (the room stays).
    pub fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.len = 0;
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in the order of the keys' hashes.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Every entry is in hash order, at or after its home, with no gap between the two.
    fn check_layout<K: Hash + Eq, V>(m: &Table<K, V>) -> Result<(), TestCaseError> {
        let mut last = 0;
        for (i, s) in m.slots.iter().enumerate() {
            let Some((k, _)) = s else { continue };
            let h = m.hash(k);
            prop_assert!(last <= h, "slot {} is out of order", i);
            last = h;
            let home = m.home(h);
            prop_assert!(home <= i, "slot {} is before its home {}", i, home);
            prop_assert!(m.slots[home..i].iter().all(Option::is_some), "slot {} is cut off from its home", i);
        }
        prop_assert_eq!(m.slots.iter().flatten().count(), m.len);
        Ok(())
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Retain(u16),
        Upsert(u16),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range so removals and replacements hit.
        prop_oneof![
            8 => (0u16..200, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            6 => (0u16..200).prop_map(Op::Remove),
            2 => (1u16..7).prop_map(Op::Retain),
            4 => (0u16..200).prop_map(Op::Upsert),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The table behaves as an ordinary map under any sequence of changes, and keeps
        /// its layout.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 1..600)) {
            let mut m = Table::default();
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
                    Op::Clear => {
                        m.clear();
                        model.clear();
                    }
                }
                check_layout(&m)?;
                prop_assert_eq!(m.len(), model.len());
            }
            for k in 0u16..200 {
                prop_assert_eq!(m.get(&k), model.get(&k));
            }
            let mut all: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
            all.sort();
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_large_table_finds_every_key_after_removals() {
        let mut m = Table::default();
        for k in 0u64..100_000 {
            assert_eq!(m.insert(k * 7919, k), None);
        }
        for k in (0u64..100_000).step_by(3) {
            assert_eq!(m.remove(&(k * 7919)), Some(k));
        }
        check_layout(&m).unwrap();
        for k in 0u64..100_000 {
            assert_eq!(m.get(&(k * 7919)), (k % 3 != 0).then_some(&k), "key {k}");
        }
        assert_eq!(m.len(), 66_666);
    }

    #[test]
    fn a_thousand_entries_take_less_room_than_in_a_power_of_two_table() {
        // A power-of-two table at most 3/4 full holds 1,000 entries in 2,048 slots.
        let mut m = Table::default();
        for k in 0u64..1000 {
            m.insert(k, [0u64; 3]);
        }
        let slots = m.slots.capacity();
        assert!(slots <= 1500, "{slots} slots");
        m.clear();
        assert_eq!(m.len(), 0);
        assert_eq!(m.get(&5), None);
    }
}
