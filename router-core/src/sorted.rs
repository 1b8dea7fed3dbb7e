//! A small ordered map for a router's connections: keys in one sorted vector, values in
//! another, in the same order.
//!
//! A router has a handful of connections (at most `conn_limit`) and looks one up for every
//! datagram. In a `BTreeMap` of `Conn`s the lookup reads the node's length and keys at the
//! far end of a node of eleven 680-byte values: two lines besides the value. Here the
//! length is in the map itself, the keys are packed (sixteen `ConnId`s to a line), and the
//! value follows: one line besides it. Iteration is in key order, as a `BTreeMap`'s is.

use core::borrow::Borrow;
use core::ops::Index;

/// An ordered map over two parallel vectors (see the module docs). Inserting and removing
/// shift the entries after the key, so it suits maps of tens of entries that change
/// rarely and are read often.
#[derive(Debug, Clone)]
pub(crate) struct SortedMap<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { keys: Vec::new(), values: Vec::new() }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    #[inline]
    fn find<Q: Ord + ?Sized>(&self, k: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.keys.binary_search_by(|e| e.borrow().cmp(k))
    }

    #[inline]
    pub(crate) fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &self.values[i])
    }

    #[inline]
    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &mut self.values[i])
    }

    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(k).is_ok()
    }

    /// Sets `k` to `v`; returns the value it replaced.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(core::mem::replace(&mut self.values[i], v)),
            Err(i) => {
                self.keys.insert(i, k);
                self.values.insert(i, v);
                None
            }
        }
    }

    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let i = self.find(k).ok()?;
        self.keys.remove(i);
        Some(self.values.remove(i))
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.keys.iter().zip(&self.values)
    }

    /// Values in key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter()
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> Index<&Q> for SortedMap<K, V> {
    type Output = V;

    /// # Panics
    /// If the key is not in the map.
    fn index(&self, k: &Q) -> &V {
        self.get(k).expect("no entry for the key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Behaves as a `BTreeMap`, iteration order included.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec((0u8..3, 0u16..40, any::<u32>()), 1..300)) {
            let mut m = SortedMap::default();
            let mut model = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(m.insert(k, v), model.insert(k, v)),
                    1 => prop_assert_eq!(m.remove(&k), model.remove(&k)),
                    _ => {
                        if let (Some(a), Some(b)) = (m.get_mut(&k), model.get_mut(&k)) {
                            *a ^= v;
                            *b ^= v;
                        }
                    }
                }
                prop_assert_eq!(m.len(), model.len());
                prop_assert!(m.iter().eq(model.iter()));
            }
            for k in 0u16..40 {
                prop_assert_eq!(m.get(&k), model.get(&k));
                prop_assert_eq!(m.contains_key(&k), model.contains_key(&k));
            }
        }
    }
}
